"""`edgebac docker run` and `edgebac wasm run`: build a job spec from flags and submit it.

    edgebac docker run -i s3://bucket/logs-2023-04*:/inputs -o apples:/outputs \\
        --memory 256Mi --timeout 60 --wait IMAGE CMD...
    edgebac wasm run -i https://host/data.csv:/inputs --wait ./prog.wasm ARGS...

`-i SRC:TARGET` splits at the last colon that starts an absolute path (`s3://b/k:/in`,
`http://host:8080/x:/in`); without one the target is `/inputs`. A wasm MODULE that is a file
here, a relative `-i` path here (a file or a folder) and inline data of more than 16 KiB are
uploaded to the API node's content store and named `ipfs://CID` in the spec (`cli.content`);
anything else is a source the compute node fetches (s3://, http(s)://, file:///path on it).
"""

from __future__ import annotations

from typing import Any

import click

from edgebac.cli.content import Uploader, module_source, upload_input
from edgebac.cli.options import api_option, option, output_option
from edgebac.errors import BadRequest

DEFAULT_INPUT_TARGET = "/inputs"


def split_input(text: str) -> dict[str, str]:
    """`SRC:TARGET` -> {"source", "target"}, split at the last `:/` that is not `://`."""
    for index in range(len(text) - 2, 0, -1):
        if text[index] == ":" and text[index + 1] == "/" and text[index + 2 : index + 3] != "/":
            return {"source": text[:index], "target": text[index + 1 :]}
    if text.endswith(":/"):
        return {"source": text[:-2], "target": "/"}
    return {"source": text, "target": DEFAULT_INPUT_TARGET}


def named_input(text: str) -> dict[str, str]:
    """`-i` as a spec input. Inline data is one file, `inline` in the target folder, unless the
    target's last part has a dot: then it is the file's own path (`inline:a,b:/in/data.csv`
    is `data.csv` in `/in`). Any other name: the spec's `inputs[].name`."""
    item = split_input(text)
    folder, _, name = item["target"].rstrip("/").rpartition("/")
    if not item["source"].startswith("inline:") or not folder or "." not in name.strip("."):
        return item
    return {"source": item["source"], "target": folder, "name": name}


def split_output(text: str) -> dict[str, str]:
    name, sep, path = text.partition(":")
    if not sep or not name or not path:
        raise BadRequest(f"-o {text!r}: an output volume is NAME:PATH (e.g. apples:/outputs)")
    return {"name": name, "path": path}


def split_env(items: tuple[str, ...], flag: str = "--env") -> dict[str, str]:
    """`KEY=VALUE` flag values as a dict (a later key wins); BadRequest naming the flag."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"{flag} {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def job_spec(
    engine: dict[str, Any], options: dict[str, Any], upload: Uploader | None = None
) -> dict[str, Any]:
    """The spec around an engine from the flags both commands share; with `upload`, local
    and big inline inputs go to the content store first."""
    inputs = [named_input(text) for text in options["inputs"]]
    spec: dict[str, Any] = {
        "engine": engine,
        "inputs": [upload_input(item, upload) for item in inputs] if upload else inputs,
        "outputs": [split_output(text) for text in options["outputs"]],
        "env": split_env(options["env"]),
        "network": options["network"],
    }
    resources = {k: options[k] for k in ("cpu", "memory", "disk") if options.get(k) is not None}
    if resources:
        spec["resources"] = resources
    for flag, key in (("timeout", "timeout_s"), ("concurrency", "count"), ("retries", "retries")):
        if options.get(flag) is not None:
            spec[key] = options[flag]
    return spec


def shared_options(command: Any) -> Any:
    """Flags of both `docker run` and `wasm run`."""
    for decorator in reversed(
        [
            option("-i", "--input", "inputs", multiple=True, help="SRC:TARGET input volume."),
            option("-o", "--output-volume", "outputs", multiple=True, help="NAME:PATH output."),
            option("--env", "-e", multiple=True, help="KEY=VALUE for the job's environment."),
            option("--cpu", default=None, help="CPU to claim and limit to: 500m, 2."),
            option("--memory", default=None, help="Memory to claim and limit to: 256Mi."),
            option("--disk", default=None, help="Disk to claim (also caps each input)."),
            option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=None,
                metavar="SECONDS",
                help="Seconds an execution may take, staging inputs included; also how long "
                "the job waits for a node to take it [default: 600].",
            ),
            option(
                "--network",
                type=click.Choice(["none", "full"]),
                default="none",
                show_default=True,
                help="full: the job may use the network, if the node's policy allows it.",
            ),
            option(
                "--concurrency",
                type=click.IntRange(min=1),
                default=None,
                metavar="N",
                help="Nodes to run it on at once [default: 1].",
            ),
            option(
                "--retries",
                type=click.IntRange(min=0),
                default=None,
                metavar="N",
                help="Failed executions to retry on another node [default: 2].",
            ),
            option("--wait/--no-wait", default=False, help="Follow the job until it ends."),
            api_option,
            output_option,
        ]
    ):
        command = decorator(command)
    return command


_NO_INTERSPERSE = {"allow_interspersed_args": False}


def _uploader(api: str) -> Uploader:
    from edgebac.cli.client import ApiClient

    return Uploader(ApiClient(api))


@click.group("docker")
def docker_group() -> None:
    """Run Docker jobs."""


@docker_group.command("run", context_settings=_NO_INTERSPERSE)
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@option("--entrypoint", default=None, help="Replace the image's entrypoint (one word).")
@option("--workdir", "-w", default=None, help="Working directory inside the container.")
@shared_options
def docker_run(
    image: str, command: tuple[str, ...], entrypoint: str | None, workdir: str | None, **options
) -> None:
    """Run IMAGE with CMD... as a job."""
    from edgebac.cli.job import submit_and_maybe_wait

    engine: dict[str, Any] = {"type": "docker", "image": image, "args": list(command)}
    if entrypoint is not None:
        engine["entrypoint"] = [entrypoint]
    if workdir is not None:
        engine["workdir"] = workdir
    submit_and_maybe_wait(
        options["api"],
        job_spec(engine, options, _uploader(options["api"])),
        options["wait"],
        options["output"],
    )


@click.group("wasm")
def wasm_group() -> None:
    """Run WebAssembly (WASI) jobs."""


@wasm_group.command("run", context_settings=_NO_INTERSPERSE)
@click.argument("module")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@option("--entrypoint", default="_start", show_default=True, help="Exported function to call.")
@option("--fuel", type=click.IntRange(min=1), default=None, help="Instruction budget (fuel).")
@shared_options
def wasm_run(
    module: str, args: tuple[str, ...], entrypoint: str, fuel: int | None, **options
) -> None:
    """Run MODULE (a local .wasm file or a source URL) with ARGS... as a job."""
    from edgebac.cli.job import submit_and_maybe_wait

    upload = _uploader(options["api"])
    engine: dict = {
        "type": "wasm",
        "module": module_source(module, upload),
        "entrypoint": entrypoint,
        "args": list(args),
    }
    if fuel is not None:
        engine["fuel"] = fuel
    submit_and_maybe_wait(
        options["api"],
        job_spec(engine, options, upload),
        options["wait"],
        options["output"],
    )
