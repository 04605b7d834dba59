"""The `wasijail` command: argument parsing only.

It builds a Policy from the policy file and the flags (a flag overrides the
file) and hands the run to the supervisor. User mistakes end with one line on
stderr and a documented exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from .engine import EngineOptions
from .results import STATUS_ERROR, STATUS_INTERRUPTED, STATUS_USAGE, OutcomeKind, RunResult, WasijailError
from .wasmtime_options import SUBCOMMANDS, W_KEYS

PROG = "wasijail"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, like every usage error
        self.exit(STATUS_USAGE, f"{self.prog}: error: {message}\n")


#: `-W` keys the engine takes, and `-W` switches accepted as they are (the rest are limits).
ENGINE_KEYS = frozenset(EngineOptions.names())
_W_SWITCHES = frozenset(option.name for option in W_KEYS if option.name not in ENGINE_KEYS
                        and (option.keeps is not None or option.name == "unknown-exports-allow"))


def add_policy_flags(p: argparse.ArgumentParser) -> None:
    """The flags that fill a Policy: shared by `run`, `policy show` and `batch`."""
    p.add_argument("--policy", metavar="FILE", help="policy file (TOML); default: the built-in safe default")
    p.add_argument("--dir", action="append", default=[], metavar="HOST[::GUEST[::ro]]",
                   help="preopen HOST under the name GUEST (default: HOST as written); ::ro makes it read-only")
    p.add_argument("--mapdir", action="append", default=[], metavar="GUEST::HOST",
                   help="legacy form of --dir, guest name first")
    p.add_argument("--symlinks", metavar="MODE",
                   help="what path_symlink may create: confined (default: no target that leaves its "
                        "preopen) or wasi (any relative target, as WASI allows)")
    p.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                   help="set NAME for the module, or copy it from the host when no value is given")
    p.add_argument("-W", "--wasm", dest="wasm_options", action="append", default=[], metavar="KEY[=VAL,...]",
                   help="wasmtime's wasm options: timeout=, max-memory-size=, fuel=, ...; `-W help` lists them")
    from .policy import LIMITS, limit_flag

    group = p.add_argument_group("limits (override the policy file)")
    for name, spec in LIMITS.items():
        group.add_argument(limit_flag(name), dest=f"limit_{name}", metavar=spec.metavar,
                           help=f"{spec.doc} ({spec.bounds()})".replace("%", "%%"))
    p.add_argument("--require", action="append", default=[], metavar="LAYER",
                   help="refuse to run unless this sandbox layer is available (see `wasijail doctor`)")


def add_cache_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-cache", action="store_true", help="compile the module even if a compiled copy is cached")
    p.add_argument("--cache-dir", metavar="DIR", help="compiled-module cache (default: ~/.cache/wasijail)")


def open_cache(ns: argparse.Namespace):
    """The compiled-module cache the flags ask for; its folder is made now, so that a --cache-dir that
    cannot be one (under a file, on /proc) is an OSError naming it before anything runs."""
    from .cache import ModuleCache

    if getattr(ns, "no_cache", False):
        return None
    cache = ModuleCache(ns.cache_dir)
    try:
        cache.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(cache.path, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as exc:
        raise OSError(exc.errno, f"cannot hold a cache: {exc.strerror}", str(cache.path)) from None
    return cache


def import_trio():
    """`import trio`, the first time without the `ldconfig -p` run its thread cache starts
    (sonames.py): ~10 ms of every cold start."""
    from .sonames import sonames_first

    with sonames_first():
        import trio
    return trio


def usage_error(message: str) -> NoReturn:
    """A usage error: one line on stderr, status 2 (as argparse's own)."""
    sys.stderr.write(f"{PROG}: {message}\n")
    raise SystemExit(STATUS_USAGE)


def _run_parser() -> argparse.ArgumentParser:
    from .wasmtime_options import FLAGS, spellings

    p = _Parser(prog=f"{PROG} run", description="Run a WASI module under a sandbox policy.", allow_abbrev=False,
                epilog="`-W help` and `-S help` list the wasm and WASI options.")
    add_policy_flags(p)
    add_cache_flags(p)
    p.add_argument("--invoke", metavar="NAME", help="call this export instead of _start and print its results")
    p.add_argument("--argv0", metavar="NAME", help="the module's argv[0] (default: the module's file name)")
    p.add_argument("-S", "--wasi", dest="wasi_options", action="append", default=[], metavar="KEY[=VAL,...]",
                   help="wasmtime's WASI options: inherit-env, inherit-stdin=n, preview0=n, ...; `-S help`")
    p.add_argument("-V", "--version", action="store_true", help="print the version")
    refused = p.add_argument_group("wasmtime options wasijail refuses (each says why)")
    for option in FLAGS:
        if option.refused:
            names = spellings(option)
            takes_value = len(option.name.split()) > len(names)
            dest = f"refused_{names[-1].lstrip('-')}"
            if takes_value:
                refused.add_argument(*names, dest=dest, action="append", help=argparse.SUPPRESS)
            else:
                refused.add_argument(*names, dest=dest, action="append_const", const="", help=argparse.SUPPRESS)
    p.add_argument("module", nargs="?", metavar="MODULE", help="a .wasm or .wat file, or - to read it from stdin")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the module")
    return p


def _items(values: list[str]) -> list[tuple[str, str | None]]:
    """`-W a=1,b` flags as (key, value) pairs; value None for a bare key."""
    out = []
    for text in values:
        for item in text.split(","):
            key, sep, value = item.partition("=")
            out.append((key.strip(), value.strip() if sep else None))
    return out


def _refuse(flag: str, key: str, reason: str) -> NoReturn:
    usage_error(f"{flag} {key}: not supported: {reason}" if key else f"{flag}: not supported: {reason}")


def check_refused(ns: argparse.Namespace) -> None:
    """Refuse, by name and with the reason, every wasmtime option wasijail does not take."""
    from .wasmtime_options import FLAGS, refusal, spellings

    for option in FLAGS:
        if not option.refused:
            continue
        names = spellings(option)
        given = getattr(ns, f"refused_{names[-1].lstrip('-')}", None)
        if not given:
            continue
        value = given[0] if isinstance(given[0], str) else ""
        if names[0] in ("-O", "-C", "-D", "-R"):  # groups of keys: name the key, as wasmtime would
            _refuse(names[0], value.split(",")[0].split("=")[0], option.refused)
        _refuse(names[-1] if names[-1].startswith("--") else names[0], "", option.refused)
    for flag, values in (("-W", ns.wasm_options), ("-S", getattr(ns, "wasi_options", []))):
        for key, value in _items(values):
            reason = refusal(flag, key, value)
            if reason:
                _refuse(flag, key, reason)


def _main_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="A WASI runtime for untrusted WebAssembly, with an OS-level sandbox.",
                usage=f"{PROG} [run] [OPTIONS] MODULE [ARGS...]\n       {PROG} COMMAND ...",
                epilog=f"`{PROG} help COMMAND` shows a command's options.")
    p.add_argument("-V", "--version", action="store_true", help="print the version")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    sub.add_parser("help", help="show this help, or a command's (`help COMMAND`)", add_help=False)
    return p


def version_command(argv: list[str]) -> int:
    """`wasijail --version`: wasijail's version and the wasmtime-py it runs."""
    from importlib import metadata

    print(f"{PROG} {metadata.version('wasijail')} (wasmtime-py {metadata.version('wasmtime')})")
    return 0


def help_command(argv: list[str]) -> int:
    """`wasijail help [COMMAND]`, as `wasmtime help [COMMAND]`."""
    if not argv:
        _main_parser().print_help()
        return 0
    if argv[0] in COMMANDS:
        return COMMANDS[argv[0]][0]([*argv[1:], "--help"])  # argparse prints the help and exits 0
    if argv[0] in SUBCOMMANDS:
        usage_error(f"{argv[0]}: not supported: {SUBCOMMANDS[argv[0]]}")
    usage_error(f"error: help: no command {argv[0]!r}; commands: {', '.join(COMMANDS)}")


def build_policy(ns: argparse.Namespace):
    """The Policy of the file (or the built-in default) with the flags applied.

    A bad flag value, or two flags that set the same limit, is a usage error
    (status 2); a bad policy file raises PolicyError (status 1).
    """
    from .flags import parse_dir_flag, parse_env_flag, parse_mapdir_flag, parse_w_limit
    from .policy import LIMITS, Policy, PolicyError, limit_flag

    policy = Policy.from_toml(ns.policy) if ns.policy else Policy.default()
    try:
        for text in ns.dir:
            policy = policy.with_preopen(parse_dir_flag(text), source="--dir")
        for text in ns.mapdir:
            policy = policy.with_preopen(parse_mapdir_flag(text), source="--mapdir")
        if ns.symlinks is not None:
            policy = policy.with_symlinks(ns.symlinks)
        for text in ns.env:
            policy = policy.with_env(*parse_env_flag(text))
        changes: list[tuple[str, str, str, str]] = []  # (flag, as its errors name it, limit, value)
        for key, value in _items(ns.wasm_options):
            if key in ENGINE_KEYS or key in _W_SWITCHES:
                if not hasattr(ns, "wasi_options"):
                    usage_error(f"error: -W {key}: only `wasijail run` takes engine options")
                continue  # run's _engine_and_stdio takes these
            changes.append(("-W " + key, key, parse_w_limit(key, value), value or ""))
        for name in LIMITS:
            value = getattr(ns, f"limit_{name}")
            if value is not None:
                changes.append((limit_flag(name), "", name, value))
        set_by: dict[str, str] = {}
        for source, option, name, value in changes:
            earlier = set_by.setdefault(name, source)
            if earlier != source:  # a conflict, not an override: `--timeout 5s -W timeout=9`
                usage_error(f"error: {earlier} and {source} both set the {name} limit; give one")
            flag = source.split(" ")[0]
            try:
                policy = policy.with_limits(flag, **{name: value})
            except PolicyError as exc:  # named as it was typed: `-W max-memory-size: ...`, `--memory: ...`
                raise exc.at(flag, option or None) from None
        if ns.require:
            policy = policy.with_require(*ns.require)
    except PolicyError as exc:
        usage_error(f"error: {exc}")
    return policy


def _engine_and_stdio(ns: argparse.Namespace, policy):
    """`-W` engine options, `-S` options: the EngineOptions, the policy with `-S inherit-env`, and which
    of stdin, stdout and stderr the module inherits (`-S inherit-stdin=n`...)."""
    from .engine import EngineOptionError, EngineOptions, parse_bool
    from .policy import PolicyError
    from .wasmtime_options import S_KEYS

    engine = EngineOptions()
    inherit = {"stdin": True, "stdout": True, "stderr": True}
    try:
        for key, value in _items(ns.wasm_options):
            if key in ENGINE_KEYS:
                engine = engine.with_option(key, value or "")
            elif key in _W_SWITCHES:
                parse_bool(f"-W {key}", value or "")  # accepted as it is (check_refused let it through)
        for key, value in _items(ns.wasi_options):
            if key not in {option.name for option in S_KEYS}:
                usage_error(f"error: -S: unknown option {key!r}; `-S help` lists them")
            on = parse_bool(f"-S {key}", value or "")  # every -S option wasijail accepts is a switch
            if key == "preview0":
                engine = engine.with_option(key, value or "")
            elif key == "inherit-env" and on:
                for name in os.environ:
                    policy = policy.with_env(name)
            elif key.startswith("inherit-std"):
                inherit[key.removeprefix("inherit-")] = on
    except EngineOptionError as exc:
        usage_error(f"error: {exc}")
    except PolicyError as exc:
        usage_error(f"error: -S inherit-env: {exc}")
    return engine, policy, inherit


def format_cause_chain(detail: str) -> str:
    """wasmtime's nested "Caused by:" text as the numbered chain its CLI prints."""
    causes = []
    for part in detail.strip().split("Caused by:"):
        lines = [ln.strip() if i == 0 else ln for i, ln in enumerate(part.strip("\n").splitlines())]
        lines = [ln for ln in lines if ln.strip()]
        if lines:
            causes.append(lines)
    out = []
    for number, lines in enumerate(causes):
        first, rest = lines[0].strip(), lines[1:]
        out.append(f"    {number}: {first}" if len(causes) > 1 else f"    {first}")
        indent = " " * 11 if len(causes) > 1 else " " * 8
        base = min((len(ln) - len(ln.lstrip()) for ln in rest), default=0)
        out.extend(indent + ln[base:] for ln in rest)
    return "\n".join(out)


def _report(result: RunResult, module: str) -> None:
    outcome = result.outcome
    if outcome.kind is OutcomeKind.EXIT:
        return
    if outcome.kind is OutcomeKind.TRAP:
        sys.stderr.write(f"Error: failed to run main module `{module}`\n\nCaused by:\n"
                         f"{format_cause_chain(outcome.detail)}\n")
    elif outcome.kind is OutcomeKind.TIMEOUT:
        sys.stderr.write(f"Error: failed to run main module `{module}`\n\nCaused by:\n"
                         f"    wasm trap: interrupt ({outcome.detail})\n")
    elif outcome.kind is OutcomeKind.LIMIT:
        sys.stderr.write(f"{PROG}: resource limit: {outcome.detail}\n")
    elif outcome.kind is OutcomeKind.VIOLATION and outcome.signal == signal.SIGSYS:
        # The filter's kill names itself ("sandbox violation: execve"): labelled once.
        sys.stderr.write(f"{PROG}: {outcome.detail}\n")
    elif outcome.kind is OutcomeKind.VIOLATION:  # a broken protocol: "malformed broker request: ..."
        sys.stderr.write(f"{PROG}: sandbox violation: {outcome.detail}\n")
    elif outcome.kind is OutcomeKind.CRASH:
        sys.stderr.write(f"{PROG}: crash: {outcome.detail}\n")
    else:
        sys.stderr.write(f"{PROG}: error: {outcome.detail}\n")


def run_command(argv: list[str], server=None) -> int:
    """`server`: one the entry point started before the CLI's imports (entry.py), else started here."""
    from .serverproc import start_server

    # The fork server first, before anything else here: its imports (wasmtime, pyseccomp)
    # overlap with ours (argparse's parser, the policy, trio, the supervisor). A command
    # line that ends before the run begins (usage error, help) stops it again.
    if server is None:
        server = start_server()
    try:
        return _parse_and_run(argv, server)
    finally:
        if server.popen.poll() is None and server.sock.fileno() >= 0:
            server.abandon()


def _parse_and_run(argv: list[str], server) -> int:
    p = _run_parser()
    ns = p.parse_args(argv)
    if ns.version:
        return version_command([])
    for flag, values in (("-W", ns.wasm_options), ("-S", ns.wasi_options)):
        if any(key in ("help", "help-long") for key, _ in _items(values)):
            from .wasmtime_options import help_text

            sys.stdout.write(help_text(flag))
            return 0
    check_refused(ns)
    if ns.module is None:
        p.error("the following arguments are required: MODULE")
    if ns.module.endswith(".cwasm"):
        usage_error(f"error: {ns.module}: precompiled artifacts are not accepted: wasijail compiles every module"
                    " itself, inside the sandbox, and never runs native code from its input")
    return _run(ns, server)


def _run(ns: argparse.Namespace, server) -> int:
    from .policy import PolicyError

    try:
        policy = build_policy(ns)
    except PolicyError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return STATUS_ERROR
    engine, policy, inherit = _engine_and_stdio(ns, policy)
    trio = import_trio()
    from .launcher import Launcher
    from .supervisor import RunSpec, open_supervisor

    args = list(ns.args)
    invoke_args: tuple[str, ...] = ()
    if ns.invoke:
        invoke_args, args = tuple(args), []
    source = None
    module = Path(ns.module)
    if ns.module == "-":  # the module from stdin, as `wasmtime run -`
        source, module = sys.stdin.buffer.read(), Path("<stdin>")
    argv0 = ns.argv0 if ns.argv0 is not None else os.path.basename(ns.module)
    spec = RunSpec(module=module, args=tuple(args), policy=policy, invoke=ns.invoke, invoke_args=invoke_args,
                   argv0=argv0, engine=engine, source=source)
    stdio = {name: None if keep else os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
             for name, keep in inherit.items()}

    async def main() -> RunResult:
        async with open_supervisor(cache=cache, max_parallel=1,
                                   launcher=Launcher(server=server)) as supervisor:
            if sys.stderr is not None and sys.stderr.isatty():  # None: started with stderr closed
                supervisor.on_long_compile = compile_notice
            return await supervisor.run_spec(spec, **stdio)

    try:
        cache = open_cache(ns)
        result = trio.run(main)
    except WasijailError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return STATUS_ERROR
    except OSError as exc:  # a cache folder that cannot be made or used
        sys.stderr.write(f"{PROG}: error: {exc.filename or ns.cache_dir}: {exc.strerror}\n")
        return STATUS_ERROR
    finally:
        for fd in stdio.values():
            if fd is not None:
                os.close(fd)
    for missing in result.sandbox_missing:
        sys.stderr.write(f"{PROG}: warning: ran without sandbox layer {missing}\n")
    _report(result, module.name if source is None else "-")
    return result.returncode


def compile_notice(module: Path, cached: bool) -> None:
    """One line on a terminal while a long first compile runs, as wasmtime's cache is silent about."""
    try:
        size = f"{module.stat().st_size / 1e6:.0f} MB"
    except OSError:
        size = "?"
    then = ("the result is cached, so later runs start at once" if cached
            else "no cache (--no-cache), so every run compiles it again")
    sys.stderr.write(f"{PROG}: compiling {module.name} ({size}) before its first run; {then}\n")
    sys.stderr.flush()


def compile_command(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} compile",
                description="Compile modules into the compiled-module cache ahead of time, running none of"
                            " them (the cache keeps the artifacts; nothing else is written).")
    p.add_argument("--policy", metavar="FILE",
                   help="the policy the runs will use (its fuel setting and compile_timeout apply)")
    p.add_argument("--cache-dir", metavar="DIR", help="compiled-module cache (default: ~/.cache/wasijail)")
    p.add_argument("modules", nargs="+", metavar="MODULE", help=".wasm or .wat files")
    ns = p.parse_args(argv)
    trio = import_trio()
    from .policy import Policy, PolicyError
    from .results import RunFailed
    from .supervisor import open_supervisor

    try:
        policy = Policy.from_toml(ns.policy) if ns.policy else Policy.default()
    except PolicyError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return STATUS_ERROR
    failed = 0

    async def compile_all() -> None:
        nonlocal failed
        async with open_supervisor(cache=open_cache(ns), max_parallel=1) as supervisor:
            for module in ns.modules:
                try:
                    done = await supervisor.compile(module, policy=policy)
                except RunFailed as exc:  # the module itself does not compile: the detail names its file
                    failed += 1
                    detail = exc.result.outcome.detail
                    named = detail.startswith(f"{module}:")  # load errors name the file already
                    sys.stderr.write(f"{PROG}: error: {detail if named else f'{module}: {detail}'}\n")
                    continue
                except WasijailError as exc:  # no such file, too big...: the message names it
                    failed += 1
                    sys.stderr.write(f"{PROG}: error: {exc}\n")
                    continue
                state = "already in the cache" if done.cached else f"compiled in {done.seconds:.1f} s"
                print(f"{module}: {state}", flush=True)

    try:
        trio.run(compile_all)
    except (WasijailError, OSError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return STATUS_ERROR
    return STATUS_ERROR if failed else 0


def policy_command(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} policy", description="Show the effective policy after flags are applied.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print the effective policy as TOML: the policy file (or the built-in"
                                       " default) with its comments, each value the effective one, marked")
    add_policy_flags(show)
    show.error = p.error  # type: ignore[method-assign]
    ns = p.parse_args(argv)
    from .policy import PolicyError, default_policy_text

    try:
        policy = build_policy(ns)
        try:  # the file again, for its comments (build_policy has read it)
            template: str | None = Path(ns.policy).read_text("utf-8") if ns.policy else default_policy_text()
        except (OSError, UnicodeDecodeError):  # gone or changed since: the values alone
            template = None
        sys.stdout.write(policy.to_toml(template))
    except PolicyError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return STATUS_ERROR
    return 0


def _is_interrupt(exc: BaseException) -> bool:
    """A KeyboardInterrupt, alone or inside the exception groups trio's nurseries make."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(KeyboardInterrupt) is not None
    return isinstance(exc, KeyboardInterrupt)


def _interrupted(exc: BaseException, message: str) -> int:
    """Ctrl-C (alone or in trio's exception groups): one line and STATUS_INTERRUPTED; anything else is raised."""
    if not _is_interrupt(exc):
        raise exc
    sys.stderr.write(f"{PROG}: {message}\n")
    return STATUS_INTERRUPTED


def _batch_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} batch", description="Run every job of a JSON Lines manifest, resumably, and judge"
                " the runs; `wasijail batch report RESULTS` shows the results.")
    add_policy_flags(p)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="jobs running at once (default: the number of cores)")
    p.add_argument("--results", metavar="FILE",
                   help="results file, one JSON object per finished job (default: beside the manifest,"
                        " jobs.jsonl -> jobs.results.jsonl); a job whose latest result is of the same job"
                        " (same fingerprint) is skipped")
    p.add_argument("--retry", metavar="OUTCOMES",
                   help="also run again the jobs whose latest result has one of these outcomes"
                        " (comma-separated, e.g. error,timeout,crash)")
    p.add_argument("--check-timeout", metavar="DURATION", default="60s",
                   help="how long a job's checker may run before it is killed (default: 60s)")
    p.add_argument("--output-dir", metavar="DIR",
                   help="write each job's stdout/stderr here instead of inline (not inside a writable preopen)")
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even when jobs failed (did not pass, or without a verdict did not exit 0)")
    add_cache_flags(p)
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the jobs on a Dask cluster: tcp://HOST:PORT of a running scheduler (its workers"
                        " started with --preload wasijail.cluster), or local:N to start N worker processes here"
                        " (--jobs is then split between them); needs pip install 'wasijail[cluster]'")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="with --cluster: show each worker's `wasijail doctor` report and dask's warnings")
    p.add_argument("manifest", metavar="MANIFEST", help="JSON Lines file, one job per line")
    return p


def batch_command(argv: list[str]) -> int:
    if argv and argv[0] == "report":  # a manifest named "report" runs as ./report
        return batch_report_command(argv[1:])
    p = _batch_parser()
    ns = p.parse_args(argv)
    if ns.jobs < 1:
        p.error("--jobs must be at least 1")
    from .batch import Progress, default_results_path, format_summary, load_manifest, parse_retry
    from .policy import parse_duration

    try:
        retry = parse_retry(ns.retry) if ns.retry is not None else frozenset()
        check_timeout = parse_duration(ns.check_timeout, key="--check-timeout", source="--check-timeout")
    except ValueError as exc:  # PolicyError is one too
        p.error(str(exc))
    if check_timeout <= 0:
        p.error("--check-timeout must be more than 0 s")
    if ns.cluster is not None:
        from .cluster import check_address

        problem = check_address(ns.cluster)
        if problem is not None:
            p.error(f"--cluster: {problem}")
        if ns.cache_dir is not None:
            p.error("--cache-dir applies to the local batch; with --cluster each worker keeps its own cache")
    try:
        if ns.cluster is not None:
            from .cluster import import_distributed

            import_distributed()
        policy = build_policy(ns)
        manifest = Path(ns.manifest)
        jobs = load_manifest(manifest, policy)
    except WasijailError as exc:  # a bad policy or manifest
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return STATUS_ERROR
    results = Path(ns.results) if ns.results else default_results_path(manifest)
    output_dir = Path(ns.output_dir) if ns.output_dir else None
    progress = Progress(len(jobs), 0)
    options = dict(policy=policy, results=results, output_dir=output_dir, retry=retry,
                   check_timeout=check_timeout, on_result=progress.update, on_start=progress.start)
    run = _cluster_batch if ns.cluster is not None else _local_batch
    try:
        with progress:
            summary = run(ns, jobs, options)
    except WasijailError as exc:  # a refused output folder, an unusable results file, a lost cluster
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return STATUS_ERROR
    except OSError as exc:  # the results or output files, or dask's connections (errors without an errno)
        what = (f"{exc.filename or results}: {exc.strerror}" if exc.strerror
                else f"the Dask cluster failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        sys.stderr.write(f"{PROG}: error: {what}\n")
        return STATUS_ERROR
    except BaseException as exc:
        return _interrupted(exc, f"interrupted: finished jobs are in {results}; rerun to resume")
    sys.stderr.write(format_summary(summary))
    return 0 if ns.allow_failures or summary.ok else STATUS_ERROR


def batch_report_command(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} batch report",
                description="Show a batch's results: a table on the terminal, a CSV file, or one"
                            " self-contained HTML page.")
    p.add_argument("--csv", metavar="FILE", help="write one row per job to FILE ('-': standard output)")
    p.add_argument("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
    p.add_argument("results", metavar="RESULTS", help="a results file written by `wasijail batch`")
    ns = p.parse_args(argv)
    from .report import print_table, rows_of, title_for, write_csv, write_html
    from .resultsfile import read_results

    results = Path(ns.results)
    try:
        records, problems = read_results(results)
    except WasijailError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return STATUS_ERROR
    rows = rows_of(records)
    try:
        if ns.csv == "-":
            write_csv(rows, sys.stdout)
        elif ns.csv:
            with open(ns.csv, "w", newline="") as out:
                write_csv(rows, out)
        if ns.html:
            write_html(rows, title_for(results), problems, Path(ns.html))
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: {exc.filename}: {exc.strerror}\n")
        return STATUS_ERROR
    if ns.csv != "-":
        if ns.csv or ns.html:  # the files say it all; only the unreadable lines are worth a word here
            for problem in problems:
                sys.stderr.write(f"{PROG}: warning: {problem}\n")
        else:
            print_table(rows, problems)
    return 0


def _local_batch(ns: argparse.Namespace, jobs, options: dict):
    trio = import_trio()
    from .batch import run_batch

    # Ctrl-C lands at a checkpoint, like a cancellation: every running
    # child and checker is killed and reaped, and no result line is cut in half.
    return trio.run(lambda: run_batch(jobs, parallel=ns.jobs, cache=open_cache(ns), **options),
                    restrict_keyboard_interrupt_to_checkpoints=True)


def _cluster_batch(ns: argparse.Namespace, jobs, options: dict):
    """`batch --cluster`: the same manifest and results file, the jobs run by Dask workers."""
    import logging

    from .cluster import open_cluster, run_cluster_batch, worker_reports

    workers = int(ns.cluster.split(":")[1]) if ns.cluster.startswith("local:") else 1
    # Dask logs to stderr: the batch says what went wrong in one line, so only -v shows its warnings.
    log_level = logging.WARNING if ns.verbose else logging.CRITICAL
    with open_cluster(ns.cluster, threads_per_worker=-(-ns.jobs // workers), log_level=log_level) as client:
        if ns.verbose:
            for address, report in worker_reports(client).items():
                sys.stderr.write(f"worker {address}:\n{report}\n")
        return run_cluster_batch(jobs, client=client, cache=not ns.no_cache, **options)


def cache_command(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} cache", description="Inspect or empty the compiled-module cache.")
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--cache-dir", metavar="DIR", help="the cache folder (default: ~/.cache/wasijail)")
    ns = p.parse_args(argv)
    from .cache import ModuleCache

    cache = ModuleCache(ns.cache_dir)
    try:
        if ns.action == "clear":
            print(f"removed {cache.clear()} compiled modules from {cache.path}")
        else:
            info = cache.info()
            print(f"path:     {info.path}\nentries:  {info.entries}\n"
                  f"size:     {info.size} bytes\nmax size: {info.max_size} bytes")
    except OSError as exc:
        sys.stderr.write(f"{PROG}: error: {cache.path}: {exc.strerror}\n")
        return STATUS_ERROR
    return 0


def doctor_command(argv: list[str]) -> int:
    p = _Parser(prog=f"{PROG} doctor",
                description="Show which sandbox layers this host provides, and why any is missing,"
                            " and which layer enforces each resource limit.")
    p.parse_args(argv)
    from .doctor import format_limits, format_report, probe_layers, probe_limits

    sys.stdout.write(f"{format_report(probe_layers())}\n\nlimits and what enforces them:\n"
                     f"{format_limits(probe_limits())}\n")
    return 0


COMMANDS = {
    "run": (run_command, "run a module (the default command)"),
    "policy": (policy_command, "show the effective policy (`policy show [--policy F] [flags]`)"),
    "batch": (batch_command, "run the jobs of a JSON Lines manifest (`batch MANIFEST [flags]`)"),
    "doctor": (doctor_command, "show which sandbox layers this host provides"),
    "compile": (compile_command, "compile modules into the cache ahead of time (`compile MODULE...`)"),
    "cache": (cache_command, "inspect or empty the compiled-module cache (`cache info|clear`)"),
}


def main(argv: list[str] | None = None, server=None) -> int:
    """The `wasijail` command; `argv` defaults to sys.argv[1:].

    Called without `argv` (the console script, `python -m wasijail`) it is the
    whole process: a run then ends the process itself once its output is
    flushed, skipping the interpreter's teardown of trio, the supervisor and
    every module (~50 ms after each run, with nothing left to clean: the run
    has reaped its child and the fork server and removed its cgroups).
    `server`: a fork server already started for a run (entry.py); killed if the
    command line is not one.
    """
    from .stdio import fill_closed_stdio

    fill_closed_stdio()  # before anything opens a descriptor: nothing internal may become 0, 1 or 2
    program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    run_args = _run_args(argv)
    if server is not None and run_args is None:
        server.abandon()
        server = None
    status = _dispatch(argv, run_args, server)
    if program and run_args is not None:
        _end_process(status)
    return status


# First words that are not a module to run.
_NOT_RUNS = frozenset({"-h", "--help", "-V", "--version", "help"})


def _run_args(argv: list[str]) -> list[str] | None:
    """The arguments of a run when the command line asks for one (`run ...`, or a module named
    first, like `wasmtime demo.wasm`), else None: the one rule of what is a run."""
    if not argv:
        return None
    if argv[0] == "run":
        return argv[1:]
    if argv[0] in COMMANDS or argv[0] in _NOT_RUNS or argv[0] in SUBCOMMANDS:
        return None
    return argv


def _dispatch(argv: list[str], run_args: list[str] | None, server=None) -> int:
    try:
        if run_args is not None:
            return run_command(run_args, server)
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]][0](argv[1:])
        if argv and argv[0] in ("-h", "--help"):
            _main_parser().print_help()
            return 0
        if argv and argv[0] in ("-V", "--version"):
            return version_command(argv[1:])
        if argv and argv[0] == "help":
            return help_command(argv[1:])
        if argv and argv[0] in SUBCOMMANDS:  # wasmtime's other commands: refused by name, not run as modules
            usage_error(f"{argv[0]}: not supported: {SUBCOMMANDS[argv[0]]}")
        _main_parser().print_help(sys.stderr)
        return STATUS_USAGE
    except BrokenPipeError:
        return STATUS_ERROR
    except BaseException as exc:
        # The run's own cleanup has killed and reaped its child by the time Ctrl-C gets here.
        return _interrupted(exc, "interrupted")


def _end_process(status: int) -> NoReturn:
    """Flush stdout and stderr and exit with `status` now, without the interpreter's teardown.
    Output that cannot be flushed (a closed pipe) fails the command, as the interpreter would."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            status = status or STATUS_ERROR
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
