"""Hostile and careless YAML for the bad-input tests: generators and mutators."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """Aliases of aliases: `levels` levels of `width` each expand to width**levels nodes."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join(f"*a{i - 1}" for _ in range(width))
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def deeply_nested(depth: int = 20_000) -> str:
    """A flow sequence nested `depth` levels deep."""
    return "x: " + "[" * depth + "]" * depth + "\n"


def with_control_character(text: str, char: str = "\x01") -> str:
    """`text` with a non-printable character in its second line."""
    first, _, rest = text.partition("\n")
    return f"{first}\n# {char}\n{rest}"


def hostile_files() -> list[Callable[[str], str]]:
    """Ways to turn a configuration file into one that must be rejected: control character, depth, aliases."""
    return [with_control_character, lambda _: deeply_nested(), lambda _: billion_laughs()]


# Edits a careless user or an attacker makes: cut, duplicate, swap and insert characters and lines.
_SPICE = st.sampled_from(
    [
        "\x00",
        "\x01",
        "\t",
        ":",
        "- ",
        "[",
        "{",
        "&a ",
        "*a",
        "!!python/object:os.system ",
        "'",
        '"',
        "\n  ",
        ".nan",
        ".inf",
        "-.inf",
        "1e400",
        "true",
        "~",
        "<<: *a",
        "2001-13-45",
        "0x",
        "---\n",
        "%YAML 1.1\n",
    ]
)


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """`text` after one to five random edits."""
    for _ in range(draw(st.integers(1, 5))):
        if not text:
            text = draw(_SPICE)
            continue
        at = draw(st.integers(0, len(text) - 1))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "duplicate-line", "drop-line"]))
        if edit == "insert":
            text = text[:at] + draw(_SPICE | st.text(max_size=5)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif edit == "replace":
            text = text[:at] + draw(_SPICE) + text[at + 1 :]
        else:
            lines = text.splitlines(keepends=True)
            index = draw(st.integers(0, len(lines) - 1))
            if edit == "duplicate-line":
                lines.insert(index, lines[index])
            else:
                del lines[index]
            text = "".join(lines)
    return text
