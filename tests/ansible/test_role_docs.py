"""The role's variables are declared once: defaults/main.yml, meta/argument_specs.yml
and the README's table must agree (no variable undocumented, no stale default)."""

from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "homewarden"
README = ROLE.parents[1] / "README.md"


def specs():
    return yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]


def table_row(name, spec):
    d = spec.get("default")
    if isinstance(d, bool):
        shown = f"`{str(d).lower()}`"
    elif d == "":
        shown = '`""`'
    elif isinstance(d, str):
        shown = f"`{d}`"
    else:
        shown = "`" + yaml.safe_dump(d, default_flow_style=True).strip().removesuffix("...").strip() + "`"
    kind = f"list of {spec['elements']}" if "elements" in spec else spec["type"]
    if "choices" in spec:
        kind += " (" + ", ".join(map(str, spec["choices"])) + ")"
    desc = spec["description"]
    desc = " ".join(desc) if isinstance(desc, list) else desc
    return f"| `{name}` | {kind} | {shown} | {desc.replace('|', chr(92) + '|')} |"


def test_every_default_is_declared_with_the_same_value():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    s = specs()
    assert sorted(defaults) == sorted(s)
    for name, value in defaults.items():
        assert s[name].get("default") == value, name
        assert s[name].get("description"), name
        assert name.startswith("homewarden_"), name


def test_readme_table_matches_the_argument_specs():
    rows = [line for line in README.read_text().splitlines() if line.startswith("| `homewarden_")]
    want = [table_row(n, s) for n, s in specs().items()]
    assert rows == want, "README table is stale; expected rows:\n" + "\n".join(want)


def test_secrets_are_no_log():
    for name, spec in specs().items():
        if name.endswith(("_api_key", "_token", "_passphrase")) or name == "homewarden_env_extra":
            assert spec.get("no_log") is True, name
