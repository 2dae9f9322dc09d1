"""The remote half of the ``ssh`` mechanism: the POSIX shell scripts it runs on the host, and the environment it sends.

Nothing secret is ever in a script or its arguments (both are visible in ``ps`` on the host): the agent's
environment travels on the ssh session's standard input as ``export NAME='value'`` lines, which the start script
reads (``cat``) and evaluates in the shell itself (``export`` is a builtin: no process gets them in its argv).

The agent runs under a small supervisor shell started with ``setsid``: a session and process group of its own that
outlives the ssh session, found again by its pid and the pid's start time (``/proc/<pid>/stat`` field 22, which tells
a reused pid apart). The supervisor waits for the agent and writes its exit code to ``<stateDir>/<instance>.exit``
(``~/.nats-mcp-fleet`` by default), so that any coordinator can later tell "exited with code N" from "gone".
Needs on the host: a POSIX login shell, ``setsid`` (util-linux), ``/proc`` (Linux).
"""

from __future__ import annotations

import shlex

# The session leader: waits for the agent (a trapped TERM interrupts `wait` without ending the supervisor, so the
# agent's own exit code is still recorded after a stop), then writes that code where poll finds it.
SUPERVISE = r"""out=$1; shift
trap : TERM INT HUP
"$@" &
c=$!
rc=
while [ -z "$rc" ]; do
  wait "$c"; r=$?
  if [ "$r" -le 128 ] || ! kill -0 "$c" 2>/dev/null; then rc=$r; fi
done
echo "$rc" > "$out.tmp" && mv -f "$out.tmp" "$out"
"""

_STAT = r"""stat_of() { s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ -n "$s" ] && echo "$s"; }
home() { case $1 in "~") echo "$HOME" ;; "~/"*) echo "$HOME/${1#"~/"}" ;; *) echo "$1" ;; esac; }
alive() { st=$2; s=$(stat_of "$1") || return 1; set -- $s; [ "$1" != Z ] && [ "${20}" = "$st" ]; }
"""

# $1 supervisor, $2 cwd ('' = home), $3 log file, $4 state directory, $5 instance, then the command.
# Standard input: the environment.
START = (
    _STAT
    + r"""sup=$1 cwd=$2 log=$3 dir=$(home "$4") inst=$5; shift 5
env_script=$(cat) || { echo NMCP-ERR stdin; exit 90; }
if [ -n "$cwd" ]; then cd "$cwd" 2>/dev/null || { echo NMCP-ERR cwd; exit 91; }; fi
command -v "$1" >/dev/null 2>&1 || { echo NMCP-ERR command; exit 92; }
command -v setsid >/dev/null 2>&1 || { echo NMCP-ERR setsid; exit 97; }
: >>"$log" 2>/dev/null || { echo NMCP-ERR log; exit 96; }
um=$(umask); umask 077
mkdir -p "$dir" 2>/dev/null || { echo NMCP-ERR state; exit 93; }
out=$dir/$inst.exit
rm -f "$out"
eval "$env_script" 2>/dev/null || { echo NMCP-ERR env; exit 94; }
umask "$um"
setsid sh -c "$sup" nats-mcp-fleet "$out" "$@" </dev/null >>"$log" 2>&1 &
pid=$!
s=$(stat_of "$pid") || { echo NMCP-ERR gone; exit 95; }
set -- $s
echo "NMCP-STARTED $pid ${20}"
"""
)

# $1 pid, $2 its start time, $3 state directory, $4 instance: RUNNING, EXIT <code> (read once), or GONE (ended,
# code unknown).
POLL = (
    _STAT
    + r"""out=$(home "$3")/$4.exit
if alive "$1" "$2"; then echo NMCP-RUNNING; exit 0; fi
if [ -r "$out" ]; then echo "NMCP-EXIT $(cat "$out")"; rm -f "$out"; else echo NMCP-GONE; fi
"""
)

# $1 pid, $2 its start time, $3 state directory, $4 instance, $5 whole seconds (at least) to wait after TERM before
# KILL, both sent to the process group.
STOP = (
    _STAT
    + r"""pid=$1 start=$2 out=$(home "$3")/$4.exit
if alive "$pid" "$start"; then
  kill -TERM "-$pid" 2>/dev/null
  n=$(( $5 * 10 ))
  while alive "$pid" "$start"; do
    if [ "$n" -le 0 ]; then kill -KILL "-$pid" 2>/dev/null; break; fi
    n=$(( n - 1 ))
    sleep 0.1
  done
fi
rm -f "$out"
echo NMCP-STOPPED
"""
)

ERRORS = {
    "stdin": "could not read the environment sent on standard input",
    "cwd": "cannot change to the working directory {cwd!r} on the host",
    "command": "command {command!r} not found on the host",
    "state": "cannot create the state directory {state!r} on the host (where exit codes are kept)",
    "env": "the host's shell refused the environment",
    "gone": "the agent ended at once (see its log on the host)",
    "log": "cannot write the log file {log!r} on the host",
    "setsid": "setsid (util-linux) not found on the host",
}


def remote_command(script: str, args: list[str]) -> str:
    """The command line ssh hands to the host's login shell: ``sh -c SCRIPT`` with its arguments, all quoted."""
    return " ".join(["exec", "sh", "-c", shlex.quote(script), "nats-mcp-fleet", *(shlex.quote(a) for a in args)])


def env_script(env: dict[str, str]) -> bytes:
    """The environment as shell ``export`` lines for standard input (names are checked variable names; every value
    single-quoted, so nothing in it is expanded or run)."""
    lines = [f"export {name}={shlex.quote(value)}\n" for name, value in env.items()]
    return "".join(lines).encode()
