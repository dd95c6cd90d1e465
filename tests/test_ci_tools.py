"""Every program a test or bench module looks for is installed by ``.ci/run`` (its TOOLS table), so CI
never passes only where someone installed a program by hand; on other machines those tests skip."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from conftest import ROOT

SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
SYSTEM_PATH = re.compile(r"^/(?:usr/)?s?bin/([\w.+-]+)$")


def ci_tools(script: str) -> dict[str, str]:
    """The ``TOOLS=( command:package ... )`` table of .ci/run."""
    block = re.search(r"^TOOLS=\((.*?)^\)", script, re.S | re.M)
    assert block, ".ci/run has a TOOLS=( ... ) table"
    entries = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return dict(entry.split(":", 1) for entry in entries if entry)


def programs_looked_for(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Programs named by ``shutil.which("x")``, ``require_executable("x", ...)``, a subprocess argv
    starting with a literal bare name, or a literal system path such as "/usr/bin/x"."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            path = SYSTEM_PATH.match(node.value)
            if path:
                yield node.lineno, path.group(1)
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        first = node.args[0]
        if name in {"which", "require_executable"} and isinstance(first, ast.Constant):
            yield node.lineno, str(first.value).rsplit("/", 1)[-1]
        elif name in SUBPROCESS_CALLS and isinstance(first, ast.List) and first.elts:
            head = first.elts[0]
            if isinstance(head, ast.Constant) and isinstance(head.value, str) and "/" not in head.value:
                yield node.lineno, head.value


def test_ci_installs_every_program_the_tests_look_for() -> None:
    tools = ci_tools((ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    assert {"wrk", "nginx", "chromium", "pg_ctlcluster"} <= set(tools)
    sources = sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")])
    found: dict[str, list[str]] = {}
    for source in sources:
        for line, program in programs_looked_for(ast.parse(source.read_text(encoding="utf-8"))):
            found.setdefault(program, []).append(f"{source.relative_to(ROOT)}:{line}")
    assert {"wrk", "nginx", "chromium"} <= set(found), "the scan sees the programs it is meant to see"
    missing = {program: where for program, where in found.items() if program not in tools}
    assert not missing, f"add these to the TOOLS table of .ci/run (command:Debian package): {missing}"


def test_the_scan_sees_each_way_of_looking_for_a_program() -> None:
    code = (
        'shutil.which("a")\nrequire_executable("b", "pkg")\nsubprocess.run(["c", "-v"])\n'
        'subprocess.Popen(["/opt/x/d"])\nBIN = "/usr/sbin/e"\nsubprocess.run([sys.executable])\n'
    )
    assert {p for _, p in programs_looked_for(ast.parse(code))} == {"a", "b", "c", "e"}
