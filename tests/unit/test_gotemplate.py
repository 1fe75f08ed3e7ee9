"""The Go-template engine against results Go's text/template (and Docker's functions) give
for the same template and data; each expected string is what `docker inspect -f` prints."""

from __future__ import annotations

from typing import Any

import pytest

from netfabric.cli.gotemplate import TemplateError, go_string, render

NET: dict[str, Any] = {
    "Name": "ov1", "Driver": "overlay", "EnableIPv6": False, "Internal": False,
    "IPAM": {"Driver": "default", "Options": None,
             "Config": [{"Subnet": "10.0.9.0/24", "Gateway": "10.0.9.1"},
                        {"Subnet": "fd00::/64", "Gateway": "fd00::1"}]},
    "Labels": {"env": "test", "com.example.team": "net"},
    "Options": {"com.docker.network.driver.mtu": "1400"},
    "Containers": {},
}
CON: dict[str, Any] = {
    "Name": "/c1",
    "NetworkSettings": {"Networks": {
        "ov1": {"IPAddress": "10.0.9.2", "IPPrefixLen": 24, "Aliases": ["web", "c1"]},
        "br1": {"IPAddress": "10.61.0.2", "IPPrefixLen": 24, "Aliases": None}}},
}


@pytest.mark.parametrize(("template", "data", "expected"), [
    ("{{range .IPAM.Config}}{{.Subnet}}{{end}}", NET, "10.0.9.0/24fd00::/64"),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", CON, "10.61.0.210.0.9.2"),
    ("{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{\"\\t\"}}{{$v.IPAddress}}\n{{end}}",
     CON, "br1\t10.61.0.2\nov1\t10.0.9.2\n"),
    ("{{(index .IPAM.Config 0).Gateway}}", NET, "10.0.9.1"),
    ('{{index .Labels "env"}} {{index .Options "com.docker.network.driver.mtu"}}', NET,
     "test 1400"),
    ("{{len .IPAM.Config}} {{len .Labels}} {{len .Name}}", NET, "2 2 3"),
    ("{{if .Containers}}used{{else}}unused{{end}}", NET, "unused"),
    ("{{if .EnableIPv6}}v6{{else if .Internal}}int{{else}}plain{{end}}", NET, "plain"),
    ('{{join (index .NetworkSettings.Networks "ov1").Aliases ","}}', CON, "web,c1"),
    ("{{json .IPAM.Config}}", NET,
     '[{"Gateway":"10.0.9.1","Subnet":"10.0.9.0/24"},{"Gateway":"fd00::1","Subnet":"fd00::/64"}]'),
    ("{{json .Labels}}", NET, '{"com.example.team":"net","env":"test"}'),
    ('{{printf "%-5s|%3d|%q|%v" .Name 7 .Driver .EnableIPv6}}', NET, 'ov1  |  7|"overlay"|false'),
    ("{{upper .Name}} {{lower \"AB\"}} {{title \"a b\"}} {{.Name | upper}}", NET,
     "OV1 ab A B OV1"),
    ("{{.Labels}}", NET, "map[com.example.team:net env:test]"),
    ("{{.IPAM.Options}} {{.Nope}}", NET, "<nil> <no value>"),
    ("{{.NetworkSettings.Networks.ov1.Aliases}}", CON, "[web c1]"),
    ("{{- range .IPAM.Config -}} {{.Gateway}} {{- end}}", NET, "10.0.9.1fd00::1"),
    ("{{with .IPAM}}{{.Driver}}{{end}}{{with .Nope}}x{{else}}none{{end}}", NET, "defaultnone"),
    ("{{range .Containers}}x{{else}}empty{{end}}", NET, "empty"),
    ('{{range $i, $c := .IPAM.Config}}{{if $i}},{{end}}{{$c.Subnet}}{{end}}', NET,
     "10.0.9.0/24,fd00::/64"),
    ('{{$n := .Name}}{{range .IPAM.Config}}{{$n}}:{{.Subnet}} {{end}}', NET,
     "ov1:10.0.9.0/24 ov1:fd00::/64 "),
    ('{{range .IPAM.Config}}{{$.Name}}{{end}}', NET, "ov1ov1"),
    ('{{if and .Name (eq .Driver "bridge" "overlay")}}y{{end}}{{if or .Internal .Nope}}n{{end}}',
     NET, "y"),
    ('{{if not .Internal}}ext{{end}} {{if ne .Driver "x"}}ne{{end}} {{if lt 1 2}}lt{{end}}',
     NET, "ext ne lt"),
    ('{{split "a,b,c" ","}} {{pad "x" 1 2}}| {{truncate .Driver 4}}', NET, "[a b c]  x  | over"),
    ('{{/* a comment */}}{{print 1 2 "a" "b"}} {{println .Name}}', NET, "1 2ab ov1\n"),
    ("{{`raw\\t`}}", NET, "raw\\t"),
    ("{{range $i, $c := .IPAM.Config}}{{if $i}}{{break}}{{end}}{{$c.Subnet}}{{end}}", NET,
     "10.0.9.0/24"),
    ("{{printf \"%s\" .Name}}{{printf \"%d%%\" 50}}", NET, "ov150%"),
])
def test_templates_as_go_prints_them(template: str, data: Any, expected: str) -> None:
    assert render(template, data) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (24, "24"), (24.0, "24"), (1.5, "1.5"), (1e6, "1e+06"), (123456.0, "123456"),
    (1234567.0, "1.234567e+06"), (1e-05, "1e-05"), (0.0001, "0.0001"), (True, "true"),
    (None, "<nil>"), ([], "[]"), ({}, "map[]"), ({"b": [1, 2], "a": None}, "map[a:<nil> b:[1 2]]"),
])
def test_values_print_as_go_fmt(value: Any, expected: str) -> None:
    assert go_string(value) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{{.Name", "unclosed action"),
    ("{{if .Name}}x", "without {{end}}"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{nosuch .Name}}", 'function "nosuch" not defined'),
    ("{{range 1.5}}{{end}}", "can't iterate"),
    ("{{index .IPAM.Config 5}}", "index out of range"),
    ("{{.Name.Sub}}", "can't evaluate field Sub"),
    ("{{$x}}", "undefined variable"),
    ("{{break}}", "outside range"),
    ("{{.Name 1}}", "can't give argument to non-function"),
    ('{{lt 1 "a"}}', "incompatible types"),
    ("{{template \"x\"}}", "not supported"),
])
def test_bad_templates_are_one_clear_error(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")
                       .replace("(", r"\(").replace(")", r"\)")):
        render(template, NET)


def test_strict_mode_refuses_unknown_fields_like_docker_listings() -> None:
    assert render("{{.Nope}}", NET) == "<no value>"
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        render("{{.Nope}}", NET, strict=True)


def test_methods_with_arguments() -> None:
    ctx = {"Label": lambda key: {"env": "test"}.get(key, ""), "Name": "x"}
    assert render('{{.Label "env"}}|{{.Label "nope"}}|{{json .}}', ctx) == 'test||{"Name":"x"}'
