"""Every command README.md shows runs as written: it names an existing entry point, and each
``--flag`` it uses is accepted by that entry point's argument parser.

Generic, so that it keeps working when the README is rewritten: it reads every fenced
``bash``/``sh``/``shell``/``console`` block (one command per line, ``\\`` continuations,
``&&``/``||``/``;``/`` | `` chains) and every inline code span in a Markdown table row that
starts like a command (``python``, ``.venv/bin/...``, a console script, anything named
``acrloss...``). For each command:

- a console script (``acrloss``, ``acrloss-test``, ... from ``pyproject.toml``, also as
  ``.venv/bin/NAME``), ``python -m MODULE`` (a module of this package, or an importable
  third-party one such as ``pytest``), ``python SCRIPT.py`` / ``bash SCRIPT`` / ``./PATH``
  (a file in the repository), or a listed shell tool (``cd``, ``source``, ``pip``, ...);
  anything else is an unknown program;
- for this project's entry points the parser is *built without running the command*: the
  entry point is called with the command's arguments while
  ``argparse.ArgumentParser.parse_known_args`` is replaced by a function that raises with
  the parser; sub-commands (``acrloss align``) are followed into their sub-parser, and an
  alternatives token in sub-command position (``acrloss train|test ...``) is checked per
  alternative. Every ``--flag`` (and ``-x``) must be an option of that parser.

Placeholders (``PATH``, ``[--opt N]``, ``...``, ``a|b`` values) are fine: values and
positionals are not checked. ``test_checker_reports_fabricated_mistakes`` runs the same
checker on a made-up README with one mistake of each kind.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import re
import runpy
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PACKAGE = "acrloss"
#: programs a README may use that are not this project's entry points (not checked further)
SHELL_TOOLS = frozenset({
    "cd", "source", ".", "export", "unset", "set", "env", "git", "pip", "pip3", "echo", "cat", "ls", "mkdir", "rm",
    "cp", "mv", "ln", "tar", "unzip", "curl", "wget", "head", "tail", "tee", "less", "grep", "find", "deactivate",
    "time", "sudo", "apt-get", "apt", "conda", "docker", "nvidia-smi", "open", "xdg-open", "du", "wc", "diff",
    "python3 -m venv", "uv", "make", "tensorboard",
})
SHELLS = frozenset({"bash", "sh", "zsh"})
#: third-party ``python -m`` tools a README may name without them being installed here
PYTHON_TOOLS = frozenset({"build", "twine", "venv", "pip", "pipx", "virtualenv", "ensurepip", "pytest"})
FENCE_LANGS = frozenset({"bash", "sh", "shell", "console", "zsh"})


# ---------------------------------------------------------------------------- reading the README
def fenced_commands(text: str) -> list[str]:
    """Command lines of the fenced shell blocks (continuations joined, prompts and comments dropped)."""
    out: list[str] = []
    for m in re.finditer(r"^```[ \t]*([\w+-]*)[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        if m.group(1).lower() not in FENCE_LANGS:
            continue
        body = re.sub(r"\\\n", " ", m.group(2))
        for line in body.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            if line and not line.startswith("#"):
                out.append(line)
    return out


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells (``\\|`` is a literal bar inside a cell)."""
    row = row.strip().strip("|")
    return [c.replace("\x00", "|") for c in row.replace("\\|", "\x00").split("|")]


def looks_like_command(span: str, scripts: dict[str, str]) -> bool:
    words = span.split()
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    if not words:
        return False
    first = words[0]
    return (first in ("python", "python3") or first.startswith(".venv/") or first in scripts
            or re.fullmatch(rf"{PACKAGE}([-_][\w-]+)?", first) is not None)


def table_commands(text: str, scripts: dict[str, str]) -> list[str]:
    """Inline code spans in table rows that start like a command."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.lstrip().startswith("|") or re.fullmatch(r"\s*\|[\s:|-]+\|?\s*", line):
            continue
        for cell in _cells(line):
            for span in re.findall(r"`([^`]+)`", cell):
                if looks_like_command(span, scripts):
                    out.append(span.strip())
    return out


def console_scripts() -> dict[str, str]:
    """``{name: "module:function"}`` from ``[project.scripts]`` of pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r"^\[project\.scripts\]\s*$(.*?)(?=^\[|\Z)", text, flags=re.S | re.M)
    if not m:
        return {}
    return dict(re.findall(r'^\s*"?([\w.-]+)"?\s*=\s*"([^"]+)"', m.group(1), flags=re.M))


# ---------------------------------------------------------------------------- building parsers
class _ParserBuilt(BaseException):  # BaseException: an entry point's "except Exception" cannot swallow it
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


@contextlib.contextmanager
def _intercept(argv0: str, args: list[str]) -> Iterator[None]:
    def stop(self, args=None, namespace=None):  # noqa: ANN001
        raise _ParserBuilt(self)

    saved_argv, saved_parse = sys.argv, argparse.ArgumentParser.parse_known_args
    sys.argv = [argv0, *args]
    argparse.ArgumentParser.parse_known_args = stop  # type: ignore[method-assign]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: "found in sys.modules"
            yield
    finally:
        sys.argv = saved_argv
        argparse.ArgumentParser.parse_known_args = saved_parse  # type: ignore[method-assign]


def build_parser(call: Callable[[], object], argv0: str, args: list[str]) -> argparse.ArgumentParser | None:
    """The parser ``call`` builds when run with ``args`` (the command itself never runs)."""
    try:
        with _intercept(argv0, args):
            call()
    except _ParserBuilt as built:
        return built.parser
    except SystemExit:
        return None
    return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def _takes_value(parser: argparse.ArgumentParser, flag: str) -> bool:
    action = parser._option_string_actions.get(flag)  # noqa: SLF001
    return action is not None and action.nargs != 0


def check_flags(parser: argparse.ArgumentParser, args: list[str], where: str) -> list[str]:
    """Problems with ``args`` for ``parser``: unknown options, unknown sub-commands."""
    problems: list[str] = []
    current, skip_value = parser, False
    for tok in args:
        if skip_value:
            skip_value = False
            if not tok.startswith("-"):
                continue
        if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", tok):
            flag = tok.split("=", 1)[0]
            if flag not in current._option_string_actions:  # noqa: SLF001
                problems.append(f"{where}: {current.prog} has no option {flag}")
            skip_value = "=" not in tok and _takes_value(current, flag)
            continue
        subs = _subparsers(current)
        if subs:
            if tok not in subs:
                problems.append(f"{where}: {current.prog} has no sub-command {tok!r} (has: {', '.join(subs)})")
                return problems
            current = subs[tok]
    return problems


# ---------------------------------------------------------------------------- one command
@dataclass
class Checked:
    command: str
    problems: list[str] = field(default_factory=list)
    parser_checked: bool = False


def _words(command: str) -> list[str]:
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    out = []
    skip = False
    for w in words:
        if skip:
            skip = False
            continue
        if re.fullmatch(r"\d?[<>]{1,2}(&\d)?", w):  # a redirection; its target follows
            skip = not w.endswith(("&1", "&2"))
            continue
        if re.fullmatch(r"\d?[<>]{1,2}\S+", w):
            continue
        w = w.strip("[]")
        if w and w not in ("...", "…"):
            out.append(w)
    while out and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", out[0]):  # VAR=value prefixes
        out.pop(0)
    return out


def _project_module(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _module_call(module: str) -> Callable[[], object]:
    return lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)


def _script_call(path: Path) -> Callable[[], object]:
    return lambda: runpy.run_path(str(path), run_name="__main__")


def _entry_call(target: str) -> Callable[[], object]:
    module, _, func = target.partition(":")

    def call() -> object:
        obj = importlib.import_module(module)
        for part in func.split("."):
            obj = getattr(obj, part)
        return obj()

    return call


def check_command(command: str, scripts: dict[str, str], repo: Path = REPO) -> Checked:
    """Check one command line (one program and its arguments)."""
    result = Checked(command)
    words = _words(command)
    if not words:
        return result
    prog, args = words[0], words[1:]
    where = f"`{command}`"
    if prog.startswith(".venv/") or re.search(r"/bin/[^/]+$", prog):
        prog = prog.rsplit("/", 1)[1]  # a console script or interpreter of a virtual environment
    if " ".join(words[:3]) in SHELL_TOOLS or prog in SHELL_TOOLS:
        return result
    call: Callable[[], object] | None = None
    argv0 = prog
    if re.fullmatch(r"python(3(\.\d+)?)?", prog):
        while args and args[0].startswith("-") and args[0] not in ("-m", "-c"):
            args = args[2:] if args[0] in ("-X", "-W") else args[1:]  # interpreter options
        if not args or args[0] == "-c":
            return result
        if args[0] == "-m":
            if len(args) < 2:
                result.problems.append(f"{where}: -m without a module")
                return result
            module, args = args[1], args[2:]
            try:
                spec = importlib.util.find_spec(module)
            except (ImportError, ValueError):
                spec = None
            if spec is None and not (module in PYTHON_TOOLS and not _project_module(module)):
                result.problems.append(f"{where}: no module {module!r}")
                return result
            if not _project_module(module):
                return result  # a third-party tool (pytest, venv, pip): exists, flags not ours to check
            call, argv0 = _module_call(module), module
        else:
            script = repo / args[0]
            if not script.is_file():
                result.problems.append(f"{where}: no script {args[0]} in the repository")
                return result
            call, argv0, args = _script_call(script), str(script), args[1:]
    elif prog in scripts:
        call = _entry_call(scripts[prog])
    elif prog in SHELLS:
        if args and not (repo / args[0]).is_file():
            result.problems.append(f"{where}: no script {args[0]} in the repository")
        return result
    elif "/" in prog:
        if not (repo / prog).is_file():
            result.problems.append(f"{where}: no file {prog} in the repository")
        return result
    else:
        result.problems.append(f"{where}: unknown program {prog!r} (not a console script in pyproject.toml, "
                               "not python -m/SCRIPT, not a listed shell tool)")
        return result

    # alternatives in sub-command position: one check per alternative
    variants = [args]
    if args and "|" in args[0] and not args[0].startswith("-"):
        variants = [[alt, *args[1:]] for alt in args[0].split("|")]
    for variant in variants:
        parser = build_parser(call, argv0, variant)
        if parser is None:
            if any(a.startswith("-") for a in variant):
                result.problems.append(f"{where}: the entry point built no argparse parser for {variant[:1]}")
            continue
        result.problems += check_flags(parser, variant, where)
        result.parser_checked = True
    return result


def split_chain(line: str) -> list[str]:
    """A fenced line's commands: split on ``&&``, ``||``, ``;`` and `` | `` (a pipe between spaces)."""
    return [c.strip() for c in re.split(r"&&|\|\||;|\s\|\s", line) if c.strip()]


def check_readme(text: str, scripts: dict[str, str], repo: Path = REPO) -> tuple[list[Checked], list[Checked]]:
    """``(fenced results, table results)`` for a README's text."""
    fenced = [check_command(c, scripts, repo) for line in fenced_commands(text) for c in split_chain(line)]
    table = [check_command(c, scripts, repo) for c in table_commands(text, scripts)]
    return fenced, table


# ---------------------------------------------------------------------------- tests
def test_readme_commands_name_existing_entry_points_with_accepted_flags():
    if not README.is_file():
        pytest.skip("README.md not found")
    scripts = console_scripts()
    assert "acrloss" in scripts, "pyproject.toml [project.scripts] not read"
    fenced, table = check_readme(README.read_text(), scripts)
    problems = [p for r in fenced + table for p in r.problems]
    assert not problems, "README commands that would not run as written:\n" + "\n".join(problems)
    assert fenced, "no command found in README.md's fenced shell blocks"
    assert any(r.parser_checked for r in fenced + table), "no project entry point's flags were checked"


FABRICATED = """
# demo

```bash
bash scripts/setup_env.sh && .venv/bin/python -m acrloss.demo --no-eval --no-such-flag
acrloss alignn photo.jpg --out o
python nosuch_script.py --x 1
.venv/bin/python -m acrloss.nosuchmodule
frobnicate --help
.venv/bin/python -m pytest -q tests && echo ok
python -m venv /tmp/w && /tmp/w/bin/pip install dist/acrloss-*.whl && /tmp/w/bin/acrloss align P --out O --refine 1
```

```python
python this_is_python_code_not_shell.py
```

| command | what it does |
|---|---|
| `python test.py --model PATH --jsonn OUT` | a typo in a flag |
| `acrloss align PHOTO... --out DIR [--model NAME\\|FILE.onnx] [--refine N]` | fine |
| `acrloss-tset --help` | a typo in the name |
| `acrloss train\\|tset ...` | a typo among alternatives |
| `acrloss export MODEL --format tflite\\|onnx --out FILE --atol 1e-4` | fine |
"""


def test_checker_reports_fabricated_mistakes():
    scripts = console_scripts()
    fenced, table = check_readme(FABRICATED, scripts)
    problems = [p for r in fenced + table for p in r.problems]
    expected = [
        "python -m acrloss.demo has no option --no-such-flag",
        "acrloss has no sub-command 'alignn'",
        "no script nosuch_script.py in the repository",
        "no module 'acrloss.nosuchmodule'",
        "unknown program 'frobnicate'",
        "acrloss-test has no option --jsonn",
        "unknown program 'acrloss-tset'",
        "acrloss has no sub-command 'tset'",
    ]
    for text in expected:
        assert sum(text in p for p in problems) == 1, (text, problems)
    assert len(problems) == len(expected), problems
    # the good lines were checked against real parsers, not skipped
    checked = {r.command for r in fenced + table if r.parser_checked and not r.problems}
    assert any(c.startswith("acrloss align PHOTO") for c in checked)
    assert any(c.startswith("acrloss export MODEL") for c in checked)
    assert any(c.startswith("/tmp/w/bin/acrloss align") for c in checked)  # a venv's console script
    assert not any("this_is_python_code" in r.command for r in fenced)  # only shell blocks are read


def test_readme_parsing_helpers():
    text = "```bash\nfoo \\\n  --bar 1  # c\n$ baz\n# comment\n```\n| a | `acrloss align X --out Y` | `--loss l2` |\n"
    assert fenced_commands(text) == ["foo    --bar 1  # c", "baz"]
    assert table_commands(text, {"acrloss": "acrloss.cli:main"}) == ["acrloss align X --out Y"]
    assert split_chain("a && b | c; d || e") == ["a", "b", "c", "d", "e"]
    assert _words("KERAS_BACKEND=jax python -m x [--y N] ... > out.txt 2>&1") == ["python", "-m", "x", "--y", "N"]
