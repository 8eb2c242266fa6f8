"""Images for bee replicas: FROM a base image, plus pinned wheels, plus the runner.

Requirements are the runner's own (pyzmq, cloudpickle, blake3), the bee's `requirements=`,
and the distributions its code and captured values come from; each is pinned to the
version the kernel has, so what is pickled here unpickles there. Wheels are downloaded
on the host (its pip settings apply) into a cache and installed offline in a build
with no network. Images are tagged by a hash of what went in and reused; the bee's
function is not in the image, it arrives over the control channel when a replica
starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata as metadata
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import platformdirs

from ..model.errors import BytewaxNBError
from ..model.settings import BASE_IMAGE
from ..model.source import PACKAGE_PATH, functions, imported_modules
from ..model.spec import BeeSpec

__all__ = [
    "IMAGE_LABEL",
    "INSTALL_LABEL",
    "RUNNER_LABEL",
    "REQUIREMENTS_LABEL",
    "BuildError",
    "ImageBuilder",
    "base_image",
    "requirements_for",
    "install_id",
    "runner_hash",
]

RUNNER_NEEDS = ("pyzmq", "cloudpickle", "blake3")
IMAGE_LABEL = "bytewax-nb.image"  # on every bee image
RUNNER_LABEL = "bytewax-nb.runner"  # the runner_hash() it was built with: `gc` drops the others
# the installation that built it: `gc` leaves other installations' images (another venv's)
INSTALL_LABEL = "bytewax-nb.install"
REQUIREMENTS_LABEL = "bytewax-nb.requirements"  # the pinned requirements it holds
_COMPLETE = ".complete"  # in a wheel folder: the download finished
PACKAGE_DIR = Path(PACKAGE_PATH)
Progress = Callable[[str], None]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across the processes of this machine (flock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class BuildError(BytewaxNBError):
    """An image could not be built; the message ends with the failing step's output."""


def kernel_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def base_image(spec: BeeSpec) -> str:
    """`image=`, else $BYTEWAX_NB_BASE_IMAGE, else python:<major>.<minor>-slim."""
    return spec.image or BASE_IMAGE.get() or f"python:{kernel_python()}-slim"


def _top_modules(fn: Callable[..., Any]) -> set[str]:
    """Top-level modules the bee's code and captured values come from."""
    tops: set[str] = imported_modules(fn)

    def note(value: Any) -> None:
        module = value.__name__ if isinstance(value, types.ModuleType) else type(value).__module__
        tops.add(module.split(".")[0])

    for f in functions(fn):
        for cell in f.__closure__ or ():
            try:
                note(cell.cell_contents)
            except ValueError:
                continue
        for name in f.__code__.co_names:
            if name in f.__globals__:
                note(f.__globals__[name])
        for default in f.__defaults__ or ():
            note(default)
    return tops


def _distributions(tops: Iterable[str]) -> set[str]:
    stdlib = set(sys.stdlib_module_names) | {"builtins", "__main__", "bytewax_nb"}
    by_module = metadata.packages_distributions()
    out = set()
    for top in tops:
        if top in stdlib or top.startswith("_"):
            continue
        out.update(by_module.get(top, []))
    return out


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_for(spec: BeeSpec, upstream: Sequence[BeeSpec] = ()) -> list[str]:
    """The bee's requirements, each pinned to the kernel's version where it has one.

    What the bees it listens to need is needed here too: their results arrive as
    pickles of their own types (a numpy array from a model bee), which this bee's
    replica must import to unpickle, whatever its own code mentions."""
    wanted: dict[str, str] = {}
    needs: list[str] = []
    for unit in (spec, *upstream):
        for s in unit.stages or (unit,):  # a fused group: every bee's code it runs
            needs += [*_distributions(_top_modules(s.fn)), *s.requirements]
    for req in (*RUNNER_NEEDS, *needs):
        name = re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0]
        wanted.setdefault(_canonical(name), req)
    return [_pin(req, key) for key, req in sorted(wanted.items())]


def _pin(req: str, key: str = "") -> str:
    """`name==the kernel's version`, or the requirement as written if the kernel lacks it."""
    key = key or _canonical(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0])
    try:
        return f"{key}=={metadata.version(key)}"
    except metadata.PackageNotFoundError:
        return req  # not in the kernel: the user's own spelling decides


def install_id() -> str:
    """Which installation of bytewax-nb this is (its package's folder)."""
    return hashlib.sha256(str(PACKAGE_DIR.resolve()).encode()).hexdigest()[:16]


def runner_hash() -> str:
    """A digest of this installation's package source, which every bee image carries."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


class ImageBuilder:
    """Builds (or finds) the image for a bee; counts real builds for tests and figures."""

    builds = 0  # images actually built in this process
    built: ClassVar[list[str]] = []  # their tags, in order

    def __init__(self, client: Any, progress: Progress | None = None) -> None:
        self._docker = client
        self._progress = progress or (lambda line: None)
        self._checked: dict[str, str] = {}
        self._cache = Path(platformdirs.user_cache_dir("bytewax-nb")) / "wheels"

    @staticmethod
    def tag_for(
        spec: BeeSpec, base_id: str = "", upstream: Sequence[BeeSpec] = ()
    ) -> tuple[str, str, list[str]]:
        """(tag, digest, pinned requirements) of the image this bee needs.

        The digest covers the base image's id (not only its name: a base rebuilt under
        the same tag makes new images), every pinned requirement, and bytewax-nb's
        own source."""
        requirements = requirements_for(spec, upstream)
        digest = hashlib.sha256(
            "\n".join([base_image(spec), base_id, *requirements, runner_hash()]).encode()
        ).hexdigest()
        return f"bytewax-nb-bee:{digest[:16]}", digest, requirements

    def image_for(self, spec: BeeSpec, upstream: Sequence[BeeSpec] = ()) -> str:
        """The image for a bee that listens to the bees `upstream`: found, or built."""
        base = base_image(spec)
        self.check_python(base)
        tag, digest, requirements = self.tag_for(spec, self._id(base), upstream)
        return self._image(tag, digest, base, requirements, f"bee {spec.name!r}")

    def image_with(self, requirements: Sequence[str], what: str) -> str:
        """An image FROM the default base with these (pinned) requirements and the runner:
        a deployed stack's hub and controller run in one."""
        base = BASE_IMAGE.get() or f"python:{kernel_python()}-slim"
        self.check_python(base)
        pinned = [_pin(r) for r in sorted(set(requirements) | set(RUNNER_NEEDS))]
        digest = hashlib.sha256(
            "\n".join([base, self._id(base), *pinned, runner_hash()]).encode()
        ).hexdigest()
        return self._image(f"bytewax-nb-bee:{digest[:16]}", digest, base, pinned, what)

    def _image(self, tag: str, digest: str, base: str, requirements: list[str], what: str) -> str:
        if self._holds(tag, requirements):
            return tag
        # one build per tag on this machine at a time: a second owner (another kernel,
        # a CLI run) building the same image waits here and then finds it
        with _locked(self._cache.parent / "locks" / f"{digest[:16]}.lock"):
            if self._holds(tag, requirements):
                return tag
            self._progress(f"building {tag} for {what}: {' '.join(requirements)}")
            wheels = self._wheels(requirements, digest)
            self._build(tag, base, wheels, requirements)
            type(self).builds += 1
            type(self).built.append(tag)
        self._progress(f"built {tag}")
        return tag

    def tag_of(self, spec: BeeSpec, upstream: Sequence[BeeSpec] = ()) -> str:
        """The tag this bee's image has (or will have) on this engine."""
        return self.tag_for(spec, self._id(base_image(spec)), upstream)[0]

    def _id(self, image: str) -> str:
        return str(self._docker.images.get(image).id)

    def _holds(self, tag: str, requirements: list[str]) -> bool:
        """The image exists and holds what its tag promises (labels written by a build
        that finished; an image without them is built again)."""
        import docker.errors

        try:
            labels = self._docker.images.get(tag).labels or {}
        except docker.errors.ImageNotFound:
            return False
        return bool(
            labels.get(RUNNER_LABEL) == runner_hash()
            and labels.get(REQUIREMENTS_LABEL) == " ".join(requirements)
        )

    def _exists(self, tag: str) -> bool:
        import docker.errors

        try:
            self._docker.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        return True

    def check_python(self, base: str) -> None:
        """The base image must have the kernel's Python major.minor (cloudpickle needs it)."""
        if base not in self._checked:
            if not self._exists(base):
                self._pull(base)
            out = self._docker.containers.run(
                base,
                ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                remove=True,
                network_mode="none",
            )
            self._checked[base] = out.decode().strip()
        found, want = self._checked[base], kernel_python()
        if found != want:
            raise BuildError(
                f"the base image {base!r} has Python {found} but the kernel runs Python {want}; "
                f"cloudpickle needs the same major.minor: use an image with Python {want} "
                f"(e.g. python:{want}-slim) via {BASE_IMAGE.name} or image="
            )

    def _pull(self, base: str) -> None:
        self._progress(f"pulling {base}")
        try:
            self._docker.images.pull(base)
        except Exception as exc:  # noqa: BLE001 - no registry, no such image, no network
            raise BuildError(
                f"the base image {base!r} is not on this machine and could not be pulled ({exc}); "
                f"pull or build one with Python {kernel_python()}, then set {BASE_IMAGE.name} "
                "(scripts/base-image.sh builds one without a registry)"
            ) from None

    def _wheels(self, requirements: list[str], digest: str) -> Path:
        """Download wheels for the image's platform, once per requirement set.

        Into a fresh folder renamed into place only once pip succeeded, so a download
        that was cut short (or another owner's, still running) is never taken for a
        complete one: the folder exists only whole."""
        folder = self._cache / digest[:16]
        if (folder / _COMPLETE).exists():
            return folder
        shutil.rmtree(folder, ignore_errors=True)  # what an older, interrupted download left
        self._cache.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=self._cache))
        machine = platform.machine()
        abi = f"cp{sys.version_info.major}{sys.version_info.minor}"
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "-d",
            str(partial),
        ]
        command += ["--python-version", kernel_python(), "--implementation", "cp", "--abi", abi]
        for tag in ("manylinux_2_28", "manylinux_2_17", "manylinux2014"):
            command += ["--platform", f"{tag}_{machine}"]
        self._progress(f"downloading wheels: {' '.join(requirements)}")
        result = subprocess.run([*command, *requirements], capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise BuildError(f"downloading wheels failed:\n{result.stderr.strip()[-3000:]}")
        (partial / _COMPLETE).write_text(" ".join(requirements))
        partial.rename(folder)
        return folder

    def _build(self, tag: str, base: str, wheels: Path, requirements: list[str]) -> None:
        with tempfile.TemporaryDirectory(prefix="bytewax-nb-build-") as ctx:
            root = Path(ctx)
            shutil.copytree(wheels, root / "wheels", ignore=shutil.ignore_patterns(_COMPLETE))
            # the widget's front-end is the kernel's business, not a replica's
            skip = shutil.ignore_patterns("__pycache__", "labextension")
            shutil.copytree(PACKAGE_DIR, root / "bytewax_nb", ignore=skip)
            (root / "Dockerfile").write_text(
                f"FROM {base}\n"
                "COPY wheels /tmp/wheels\n"
                "RUN python3 -m pip install --no-index --no-cache-dir --break-system-packages "
                "/tmp/wheels/*.whl && rm -rf /tmp/wheels\n"
                "COPY bytewax_nb /opt/bytewax-nb/bytewax_nb\n"
                "ENV PYTHONPATH=/opt/bytewax-nb PYTHONUNBUFFERED=1\n"
                f"LABEL {IMAGE_LABEL}=1 {RUNNER_LABEL}={runner_hash()} {INSTALL_LABEL}={install_id()} "
                f'{REQUIREMENTS_LABEL}="{" ".join(requirements)}"\n'
            )
            output: list[str] = []
            for chunk in self._docker.api.build(
                path=ctx, tag=tag, network_mode="none", rm=True, forcerm=True, decode=True
            ):
                if "stream" in chunk:
                    for line in chunk["stream"].splitlines():
                        if line.strip():
                            output.append(line)
                            if line.startswith("Step "):
                                self._progress(line)
                if "error" in chunk:
                    tail = "\n".join(output[-30:])
                    raise BuildError(f"building {tag} failed: {chunk['error']}\n{tail}")
