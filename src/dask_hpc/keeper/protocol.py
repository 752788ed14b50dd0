"""What a session's keeper and those who ask it (commands, ``BatchCluster``) exchange.

One request class per scheduler handler, one answer class per kind of answer, all
frozen dataclasses: the keeper's handlers take and give them, and
:class:`~dask_hpc.session.link.Link` sends them. On the wire they are plain
dicts (distributed's RPC sends msgpack): a request is its fields as keyword
arguments of handler ``op``; an answer is its fields, plus ``"answer"`` naming its
class.

A handler that refuses raises one of our errors; the wire carries the error's line
and the error itself, pickled (:func:`refusal`; every error class survives a pickle
round trip, tests/test_errors.py), and :func:`answer_from` raises it again on the
asking side. So a bad value sent to a live session is the same error, with the same
line, as the same mistake before any session exists (``dask-hpc add 1 --memory
lots``: a SpecError either way).
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from dask_hpc.errors import DaskHPCError, ProtocolError, SessionError
from dask_hpc.systems import JobState

__all__ = [
    "ANSWERS",
    "REQUESTS",
    "Adapt",
    "AdaptBounds",
    "Adapting",
    "Add",
    "Answer",
    "Down",
    "InterfaceReport",
    "JobReport",
    "Jobs",
    "KeeperStatus",
    "LastRefusal",
    "Register",
    "Remove",
    "Request",
    "Scale",
    "Status",
    "SubmitHere",
    "SubmitTrouble",
    "answer_from",
    "answer_message",
    "refusal",
    "request_from",
]


# ---- answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Jobs:
    """The jobs a request submitted or ended; ``warning``: what went wrong on the way
    (the rest was done)."""

    job_ids: list[str]
    warning: str | None = None


@dataclass(frozen=True)
class SubmitHere:
    """The scheduler's node cannot submit jobs: submit ``n`` jobs from the asker's node, then
    :class:`Register` them: ``script`` for each single job; ``arrays``, ``[tasks, script]``
    pairs, an array each (where the system has arrays, ``n`` is their tasks and a lone job)."""

    script: str
    n: int
    arrays: list[list[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AdaptBounds:
    """Adapt's bounds in worker jobs; ``maximum_jobs`` None: no upper bound (dask-jobqueue's
    default); ``interval`` seconds between its decisions, ``wait_count`` decisions in a row
    before a job is ended (distributed's Adaptive's names)."""

    minimum_jobs: int
    maximum_jobs: int | None
    interval: float = 1.0
    wait_count: int = 3


@dataclass(frozen=True)
class Adapting:
    """Adapt's bounds now (None: off); ``warning``: its first submissions were partly refused."""

    bounds: AdaptBounds | None
    warning: str | None = None


@dataclass(frozen=True)
class JobReport:
    """One worker job as the keeper (or, without a scheduler, the ledger) sees it: its ledger
    record's fields (:class:`~dask_hpc.state.ledger.JobRecord`), plus its connected workers,
    the seconds of walltime it has left and in how many seconds its replacement is due."""

    job_id: str
    job_name: str
    processes: int
    walltime: int
    submitted: float
    state: JobState
    reason: str | None = None
    node: str | None = None
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    removed: bool = False
    joined: float | None = None
    end: float | None = None
    keep: bool = False
    replaced_by: str | None = None
    spec: dict[str, Any] | None = None
    array: str | None = None
    workers: int = 0
    walltime_left: float | None = None
    replace_in: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobReport:
        return cls(**{**_known(cls, data), "state": JobState(data["state"])})


@dataclass(frozen=True)
class InterfaceReport:
    """The network interface the scheduler listens on, and why that one."""

    name: str
    address: str
    why: str


@dataclass(frozen=True)
class SubmitTrouble:
    """Failed automatic submissions in a row (:class:`~dask_hpc.keeper.decisions.Backoff`)."""

    failures: int
    words: str
    retry_in: float | None
    stopped: bool


@dataclass(frozen=True)
class LastRefusal:
    """The batch system's last refusal of a submission: by which request, its words, when (epoch s)."""

    by: str
    words: str
    at: float


@dataclass(frozen=True)
class KeeperStatus:
    """Everything the keeper knows about its session. Memory in bytes, times in seconds."""

    address: str
    dashboard: str | None
    dashboard_port: int | None
    interface: InterfaceReport
    submit_from: str
    security: str  # "tls" or "insecure"
    adapt: AdaptBounds | None
    jobs: list[JobReport]
    workers: int
    other_workers: int  # connected, but not from this session's jobs
    threads: int
    memory: int
    processes: int  # per worker job, by the session's spec
    scheduler_walltime_left: float | None
    recomputed: int  # tasks computed again because their results were lost
    submit_trouble: SubmitTrouble | None
    last_refusal: LastRefusal | None
    capped: str | None = None  # adapt held back by the site's caps on the user's jobs: by which
    pool_adapt: dict[str, AdaptBounds] = field(default_factory=dict)  # adapt of each pool that has one
    pool_capped: dict[str, str] = field(default_factory=dict)  # as capped, each adapted pool's

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "jobs": [j.to_dict() for j in self.jobs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeeperStatus:
        def nested(kind: type[_T], value: Any) -> _T | None:
            return None if value is None else kind(**_known(kind, value))

        interface = nested(InterfaceReport, data["interface"])
        assert interface is not None
        return cls(
            **{
                **_known(cls, data),
                "interface": interface,
                "adapt": nested(AdaptBounds, data.get("adapt")),
                "pool_adapt": {
                    pool: AdaptBounds(**_known(AdaptBounds, bounds))
                    for pool, bounds in (data.get("pool_adapt") or {}).items()
                },
                "jobs": [JobReport.from_dict(j) for j in data["jobs"]],
                "submit_trouble": nested(SubmitTrouble, data.get("submit_trouble")),
                "last_refusal": nested(LastRefusal, data.get("last_refusal")),
            }
        )


Answer = Jobs | SubmitHere | Adapting | KeeperStatus
ANSWERS: dict[str, type[Answer]] = {k.__name__: k for k in (Jobs, SubmitHere, Adapting, KeeperStatus)}
_T = TypeVar("_T")


# ---- requests: one per handler -----------------------------------------------------


_A = TypeVar("_A", bound=Answer, covariant=True)


@dataclass(frozen=True)
class Request(Generic[_A]):
    """A question to the keeper: ``op`` names its scheduler handler, ``_A`` its answer's type."""

    op: ClassVar[str]
    #: The answer classes it may get: ``_A``'s, read from the class statement.
    answers: ClassVar[tuple[type, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Request:
                (answer,) = get_args(base)
                cls.answers = get_args(answer) or (answer,)

    def to_message(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Add(Request[Jobs | SubmitHere]):
    """Submit ``n`` worker jobs of the session's spec changed by ``options`` (JobSpec names);
    ``keep``: replace each ahead of its walltime's end, and when it dies.
    Answer: :class:`Jobs`, or :class:`SubmitHere` where the scheduler's node cannot submit."""

    op: ClassVar[str] = "dask_hpc_add"
    n: int
    options: dict[str, Any] = field(default_factory=dict)
    keep: bool = False


@dataclass(frozen=True)
class Register(Request[Jobs]):
    """Take over jobs the asker submitted itself (after :class:`SubmitHere`). Answer: :class:`Jobs`."""

    op: ClassVar[str] = "dask_hpc_register"
    job_ids: list[str]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Remove(Request[Jobs]):
    """End ``n`` worker jobs (the keeper chooses), or the jobs ``job_ids``, after moving their
    workers' data elsewhere. Answer: :class:`Jobs`."""

    op: ClassVar[str] = "dask_hpc_remove"
    n: int | None = None
    job_ids: list[str] | None = None
    pool: str | None = None  # the n are this pool's jobs (None: the session's own)


@dataclass(frozen=True)
class Scale(Request[Jobs | SubmitHere]):
    """Make the number of live worker jobs ``jobs``; turns adapt off.
    Answer: :class:`Jobs`, or :class:`SubmitHere` (for the jobs to add)."""

    op: ClassVar[str] = "dask_hpc_scale"
    jobs: int
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Adapt(Request[Adapting]):
    """Let the keeper scale between ``minimum_jobs`` (None: 0) and ``maximum_jobs`` (None: no
    upper bound), deciding every ``interval`` seconds and ending a job after ``wait_count``
    decisions in a row (None: 1 s and 3); ``off``: stop. Answer: :class:`Adapting`."""

    op: ClassVar[str] = "dask_hpc_adapt"
    minimum_jobs: int | None = None
    maximum_jobs: int | None = None
    off: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    interval: float | None = None
    wait_count: int | None = None


@dataclass(frozen=True)
class Status(Request[KeeperStatus]):
    """Everything the keeper knows. Answer: :class:`KeeperStatus`."""

    op: ClassVar[str] = "dask_hpc_status"


@dataclass(frozen=True)
class Down(Request[Jobs]):
    """End every worker job, then the scheduler. Answer: :class:`Jobs` (the jobs ended by this)."""

    op: ClassVar[str] = "dask_hpc_down"


REQUESTS: tuple[type[Request[Any]], ...] = (Add, Register, Remove, Scale, Adapt, Status, Down)


# ---- the wire ------------------------------------------------------------------------

_OTHER_VERSION = "it runs another version of dask-hpc; start the session again with this one"


def answer_message(answer: Answer) -> dict[str, Any]:
    """``answer`` as the handler returns it over the wire."""
    body = answer.to_dict() if isinstance(answer, KeeperStatus) else asdict(answer)
    return {"answer": type(answer).__name__, **body}


def refusal(error: DaskHPCError) -> dict[str, Any]:
    """A handler's answer for ``error``: its line, and the error itself, for the asker to raise."""
    return {"error": str(error), "raised": pickle.dumps(error)}


def request_from(kind: type[Request[Any]], message: dict[str, Any]) -> Request[Any]:
    """The request a handler was called with (keyword arguments), as ``kind``."""
    message = _lists(message)
    unknown = sorted(set(message) - {f.name for f in fields(kind)})
    if unknown:
        raise ProtocolError(
            f"this session's keeper does not take {', '.join(unknown)} in {kind.__name__}: {_OTHER_VERSION}"
        )
    try:
        return kind(**message)
    except TypeError as exc:
        raise ProtocolError(f"{kind.__name__} sent to the keeper without what it needs: {exc}") from None


def answer_from(message: Any, request: Request[_A]) -> _A:
    """The answer in ``message`` to ``request``; a refusal is raised as the error it was.

    Raises:
        DaskHPCError: the keeper refused (the same type, with the same line, as raised there).
        ProtocolError: an answer of another kind, or none (a keeper of another version).
    """
    if not isinstance(message, dict):
        raise ProtocolError(f"the keeper gave an answer this dask-hpc cannot read: {message!r}")
    if message.get("error"):
        raise _raised(message)
    message = _lists(message)
    kind = ANSWERS.get(str(message.get("answer")))
    if kind is None or kind not in request.answers:
        names = " or ".join(k.__name__ for k in request.answers)
        got = f"{message['answer']!r}" if "answer" in message else "an answer of no kind"
        raise ProtocolError(f"the keeper answered {got} where {names} was expected: {_OTHER_VERSION}")
    answer: Answer
    try:
        if kind is KeeperStatus:
            answer = KeeperStatus.from_dict(message)
        elif kind is Adapting:
            bounds = message.get("bounds")
            answer = Adapting(
                None if bounds is None else AdaptBounds(**_known(AdaptBounds, bounds)), message.get("warning")
            )
        else:
            answer = kind(**_known(kind, message))
    except (TypeError, KeyError, ValueError) as exc:  # a field missing or of another form
        unreadable = f"the keeper's {kind.__name__} cannot be read ({exc})"
        raise ProtocolError(f"{unreadable}: {_OTHER_VERSION}") from None
    return cast(_A, answer)  # of a kind the request may get: checked above


def _raised(message: dict[str, Any]) -> DaskHPCError:
    """The error a keeper answered with: as it was raised there, else a SessionError."""
    pickled = message.get("raised")
    if isinstance(pickled, bytes):
        try:
            error = pickle.loads(pickled)  # from our own session's scheduler, over its TLS
        except Exception:  # a class this side lacks: its words will do
            error = None
        if isinstance(error, DaskHPCError):
            return error
    return SessionError(str(message["error"]))


def _lists(value: Any) -> Any:
    """``value`` with the tuples msgpack makes of lists (distributed reads with use_list=False)
    made lists again, so that what arrives equals what was sent."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    return value


def _known(kind: type, data: dict[str, Any]) -> dict[str, Any]:
    """The items of ``data`` that are fields of ``kind`` (a newer keeper may send more)."""
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in data.items() if k in names}
