// nfcnitool: the reference CNI library (libcni) driving a plugin, as a runtime does.
// Built by the tests from Debian's golang-github-appc-cni-dev in GOPATH mode; the
// equivalent of the CNI project's cnitool, plus "raw" for verbs libcni 1.1 lacks (GC,
// STATUS) and results in versions it cannot parse.
//
//	nfcnitool add|check|del CONFLIST NETNS [IFNAME]   (env CNI_PATH, CAP_ARGS, CNI_ARGS)
//	nfcnitool version PLUGIN
//	nfcnitool raw COMMAND CONF.json [NETNS IFNAME CONTAINERID]
package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

// fail prints "code N: message" for a plugin's error object, the error otherwise.
func fail(err error) {
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		fmt.Fprintf(os.Stderr, "code %d: %s\n", cniErr.Code, cniErr.Msg)
	} else {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(1)
}

func parseArgs(s string) [][2]string {
	var out [][2]string
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		p := strings.SplitN(kv, "=", 2)
		if len(p) == 2 {
			out = append(out, [2]string{p[0], p[1]})
		}
	}
	return out
}

func main() {
	if len(os.Args) < 3 {
		fail(fmt.Errorf("usage: nfcnitool add|check|del CONFLIST NETNS [IFNAME] | version PLUGIN | raw COMMAND CONF [NETNS IFNAME ID]"))
	}
	paths := filepath.SplitList(os.Getenv("CNI_PATH"))
	ctx := context.Background()
	cninet := libcni.NewCNIConfigWithCacheDir(paths, os.Getenv("CNI_CACHE_DIR"), nil)
	switch os.Args[1] {
	case "version":
		info, err := cninet.GetVersionInfo(ctx, os.Args[2])
		if err != nil {
			fail(err)
		}
		fmt.Println(strings.Join(info.SupportedVersions(), ","))
		return
	case "raw":
		conf, err := os.ReadFile(os.Args[3])
		if err != nil {
			fail(err)
		}
		var probe struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(conf, &probe); err != nil {
			fail(err)
		}
		plugin, err := invoke.FindInPath(probe.Type, paths)
		if err != nil {
			fail(err)
		}
		args := &invoke.Args{Command: os.Args[2], Path: os.Getenv("CNI_PATH"),
			PluginArgsStr: os.Getenv("CNI_ARGS")}
		if len(os.Args) >= 7 {
			args.NetNS, args.IfName, args.ContainerID = os.Args[4], os.Args[5], os.Args[6]
		}
		out, err := (&invoke.RawExec{Stderr: os.Stderr}).ExecPlugin(ctx, plugin, conf, args.AsEnv())
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(out)
		return
	}
	if len(os.Args) < 4 {
		fail(fmt.Errorf("need CONFLIST and NETNS"))
	}
	list, err := libcni.ConfListFromFile(os.Args[2])
	if err != nil {
		fail(err)
	}
	netns := os.Args[3]
	ifname := "eth0"
	if len(os.Args) > 4 {
		ifname = os.Args[4]
	}
	var capArgs map[string]interface{}
	if s := os.Getenv("CAP_ARGS"); s != "" {
		if err := json.Unmarshal([]byte(s), &capArgs); err != nil {
			fail(err)
		}
	}
	id := os.Getenv("CNI_CONTAINERID")
	if id == "" {
		id = fmt.Sprintf("cnitool-%x", sha512.Sum512([]byte(netns)))[:20]
	}
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifname,
		Args: parseArgs(os.Getenv("CNI_ARGS")), CapabilityArgs: capArgs}
	switch os.Args[1] {
	case "add":
		res, err := cninet.AddNetworkList(ctx, list, rt)
		if res != nil {
			_ = res.Print()
		}
		if err != nil {
			fail(err)
		}
	case "check":
		if err := cninet.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cninet.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}
