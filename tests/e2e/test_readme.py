"""Boundary between the README and the product: its commands run as printed.

The quick start's `make serve` runs for real, exactly as printed, in a copy of the checkout with nothing
installed (its own .venv, its own uv, a private HOME), up to an MCP request answered with the printed key, and the
printed way to stop the embedded NATS stops it. Every other command of the README's `bash` blocks is checked
against what exists: make targets, scripts and files, `nats-mcp` subcommands and their options (from `--help`),
settings named in the environment, pinned `npx` packages. (`make test` is what CI runs on the README's behalf.)
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from nats_mcp.config.leaves import LEAVES
from tests.support.env import nats_mcp_exe
from tests.support.http_server import KEY_RE, post_init
from tests.support.natsserver import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def commands(block: str) -> Iterator[str]:
    """Each command of a block: continuations joined, comments (after two spaces) dropped."""
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s{2,}#.*$", "", line).strip()
        if line and not line.startswith("#"):
            yield line


def readme_commands() -> list[str]:
    return [cmd for block in bash_blocks(README.read_text(encoding="utf-8")) for cmd in commands(block)]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, flags=re.MULTILINE))


def cli_help(*path: str) -> str:
    proc = subprocess.run(
        [nats_mcp_exe(), *path, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    )
    assert proc.returncode == 0, f"nats-mcp {' '.join(path)} --help: {proc.stderr}"
    return proc.stdout


def subcommands(help_text: str) -> set[str]:
    section = help_text.split("Commands", 1)[1] if "Commands" in help_text else ""
    return set(re.findall(r"^[│|]?\s+([a-z][a-z0-9-]*)\s", section, flags=re.MULTILINE))


def nats_mcp_problems(args: list[str]) -> list[str]:
    """What does not exist in ``nats-mcp ARGS``: an unknown subcommand or an option its help does not list."""
    root = cli_help()
    path: list[str] = []
    rest: list[str] = []
    for i, token in enumerate(args):
        if token.startswith("-"):
            rest = args[i:]
            break
        if token in subcommands(cli_help(*path)):
            path.append(token)
            continue
        rest = args[i:]
        break
    if subcommands(cli_help(*path)) and (not rest or not rest[0].startswith("-")):
        return [f"nats-mcp {' '.join(args)}: no subcommand {rest[0] if rest else ''}"]
    options = set(re.findall(r"--[a-z][a-z0-9-]*", cli_help(*path) + root))
    return [
        f"nats-mcp {' '.join(path)}: no option {flag}"
        for flag in (t.split("=", 1)[0] for t in rest if t.startswith("--"))
        if flag not in options
    ]


def command_problems(line: str) -> list[str]:
    words = shlex.split(line)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # leading VAR=value
        name = words.pop(0).split("=", 1)[0]
        if name.startswith("NATS_MCP_") and name not in {leaf.env for leaf in LEAVES.values()}:
            return [f"{line}: {name} is not a setting"]
    if not words:
        return []
    program, args = words[0], words[1:]
    if program == "make":
        return [f"{line}: no make target {t}" for t in args if t not in make_targets()]
    if program == "source":
        return [] if args == [".venv/bin/activate"] else [f"{line}: sources something other than the venv"]
    if program == "claude":  # the MCP client: what it is told to start must exist
        assert args[:2] == ["mcp", "add"], line
        return command_problems(shlex.join(args[args.index("--") + 1 :])) if "--" in args else []
    if program == "uvx":
        rest = args[args.index("--from") + 2 :]
        return nats_mcp_problems(rest[1:]) if rest and rest[0] == "nats-mcp" else [f"{line}: uvx runs no nats-mcp"]
    if program == "npx":
        package = next(a for a in args if not a.startswith("-"))
        return [] if re.search(r"@\d+\.\d+\.\d+$", package) else [f"{line}: {package} is not pinned"]
    if program == "nats-mcp" or program.endswith("/.venv/bin/nats-mcp"):
        return nats_mcp_problems(args)
    if program == ".venv/bin/python":
        return [] if (ROOT / args[0]).is_file() else [f"{line}: no {args[0]}"]
    if program.startswith("scripts/"):
        return [] if os.access(ROOT / program, os.X_OK) else [f"{line}: {program} is not an executable script"]
    return [f"{line}: nothing checks {program}"]


def test_every_readme_command_names_what_exists() -> None:
    found = readme_commands()
    assert "make serve" in found and "make test" in found
    assert [p for line in found for p in command_problems(line)] == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("make serv", "no make target"),
        ("nats-mcp certs inti ./x", "no subcommand"),
        ("nats-mcp serve --transport grpc --prot 1", "no option --prot"),
        ("NATS_MCP_NOPE=1 nats-mcp doctor", "not a setting"),
        ("npx -y @modelcontextprotocol/inspector --cli http://x", "not pinned"),
        ("claude mcp add x -- nats-mcp brigde", "no subcommand"),
        (".venv/bin/python bench/nope.py", "no bench/nope.py"),
    ],
)
def test_the_readme_check_catches_a_stale_command(line: str, expected: str) -> None:
    assert any(expected in p for p in command_problems(line)), command_problems(line)


def checkout_copy(dest: Path) -> Path:
    """The tracked files as they are in the working tree: what a clean clone of this commit holds."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source, target = ROOT / name, dest / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            target.chmod(source.stat().st_mode & 0o777)
    return dest


async def test_make_serve_runs_as_printed_on_a_fresh_checkout(tmp_path: Path) -> None:
    clone = checkout_copy(tmp_path / "clone")
    home = tmp_path / "home"
    home.mkdir()
    port_file = tmp_path / "http.port"
    uv_cache = subprocess.run(
        [str(ROOT / ".cache/uv/bin/uv"), "cache", "dir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "UV_CACHE_DIR": uv_cache,  # the same wheels, already downloaded: this checks the commands, not the network
        # The only departures from the defaults: no fixed port in a test, and the port is reported in a file.
        "NATS_MCP_HTTP_PORT": "0",
        "NATS_MCP_HTTP_PORT_FILE": str(port_file),
    }
    for passthrough in ("PIP_CERT", "SSL_CERT_FILE", "PIP_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT"):
        if passthrough in os.environ:
            env[passthrough] = os.environ[passthrough]
    (tmp_path / "out").touch()
    with (tmp_path / "out").open("wb") as out, (tmp_path / "err").open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            "make",
            "serve",
            cwd=clone,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        printed = await wait_for(
            lambda: "Ctrl-C stops the server." in (tmp_path / "out").read_text() and (tmp_path / "out").read_text(),
            240,
            interval=0.2,
            message=lambda: f"no banner; stderr:\n{(tmp_path / 'err').read_text()[-3000:]}",
        )
        assert proc.returncode is None
        (key,) = set(KEY_RE.findall(printed))
        port = int(
            await wait_for(
                lambda: port_file.exists() and port_file.read_text().endswith("\n") and port_file.read_text(),
                60,
                message="no port file",
            )
        )
        assert f"http://127.0.0.1:{port}/mcp" in printed
        async with httpx2.AsyncClient(timeout=30) as hc:
            assert (await post_init(hc, f"http://127.0.0.1:{port}/mcp", key)).status_code == 200
        assert (clone / ".venv" / "bin" / "activate").is_file()  # what `source .venv/bin/activate` needs
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the whole foreground group
        code = await asyncio.wait_for(proc.wait(), 60)
        stop = subprocess.run(
            [str(clone / ".venv/bin/nats-mcp"), "nats", "stop"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    # make itself dies of the SIGINT it got with its child (that is make's way); the server under it stopped cleanly.
    assert code in (0, -signal.SIGINT), (tmp_path / "err").read_text()[-3000:]
    assert "StreamableHTTP session manager shutting down" in (tmp_path / "err").read_text()
    assert "Traceback" not in (tmp_path / "err").read_text()
    assert stop.returncode == 0, stop.stdout + stop.stderr
    status = subprocess.run(
        [str(clone / ".venv/bin/nats-mcp"), "nats", "status", "--json"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert '"running": false' in status.stdout, status.stdout + status.stderr
