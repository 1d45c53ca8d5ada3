"""The Gradio app: annotator page, reviewer arena, admin page. Build with :func:`build_app`, serve with
:func:`launch_app` (``codealign annotate``).

Security model (every item is tested in ``tests/test_annotate_app.py``):

* login is required for the page and every API event (``launch(auth=...)`` against argon2 hashes); each
  event re-resolves the user from the server-side session (``gr.Request.username``) and re-checks that the
  account is active and has the role; nothing the client sends names the user;
* every event validates ids and values against the DB (:mod:`annotation_ui.assignment`, :mod:`.arena`);
* model output and user text reach the page only through :mod:`annotation_ui.render` (escaped) or as plain
  text table cells;
* Gradio's run history (browser storage of inputs) and ``/monitoring`` are off; no share link.

Refusals (a ``UserError``: forged ids, wrong role, disabled account, an unranked completion ...) are answers,
not errors: the event returns HTTP 200 with every output left as it was (``gr.skip()``) except the page's
status line, which carries ``<div class="ca-refused">Refused: REASON</div>`` (:func:`refusal_reason` reads
it back for API callers). Gradio would answer a raised ``gr.Error`` with HTTP 500 on direct events and an
error on every output component (the page lost its code and the ranks given so far); the reason reached the
user only as a toast, or not at all. Nothing was written when a refusal comes back.

Gradio is imported only inside these functions, so ``codealign --help`` never loads it.
"""

# No `from __future__ import annotations`: Gradio reads `request: gr.Request` hints at runtime.
import functools
import html
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from annotation_ui.config import AnnotateConfig
from annotation_ui.users import ROLES, User, authenticate, require_user
from codealign.errors import UserError
from db.session import Database

SHORTCUTS = [
    ("a ... h", "select completion A ... H"),
    ("1 ... 8", "give the selected completion that rank, then select the next one (equal ranks = tie)"),
    ("Enter", "submit the ranking (Ctrl+Enter inside a text box)"),
    ("s", "skip with the chosen reason"),
    ("u", "undo: re-open your last answer to edit it"),
    ("m / !", "write a comment / a flag reason"),
    ("Esc", "leave a text box"),
    ("Arena: 1 / 2 / 3 / 4", "left better / right better / tie / both bad"),
    ("Arena: n", "next pair"),
]

_SHORTCUT_JS = (Path(__file__).parent / "static" / "shortcuts.js").read_text(encoding="utf-8")


@dataclass
class AppContext:
    """What every event handler needs; handlers get the user from the request, never from inputs."""

    cfg: AnnotateConfig
    db: Database
    _sqlite_writer: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def session(self):
        """A DB transaction. On SQLite, one at a time per process: SQLite admits one writer, and its busy
        handler sleeps with back-off (up to 100 ms per retry) instead of queueing waiters, which made
        p95 latency explode under 20 concurrent annotators; a Python lock hands over immediately."""
        if not self.db.is_sqlite:
            with self.db.session() as session:
                yield session
            return
        with self._sqlite_writer, self.db.session() as session:
            yield session

    def read_session(self):
        """A transaction for handlers that only read (reports, leaderboard): never waits for writers."""
        return self.db.session()

    def user(self, session, request, roles: tuple[str, ...] = ROLES) -> User:
        return require_user(session, getattr(request, "username", None), roles)


REFUSED = "Refused: "
_REFUSED_OPEN = '<div class="ca-refused" role="alert">'


def refusal_html(reason: str) -> str:
    """The status line of a refused event; ``reason`` is escaped (it may quote what the client sent)."""
    return f"{_REFUSED_OPEN}{REFUSED}{html.escape(reason, quote=False)}</div>"


def refusal_reason(status) -> str | None:
    """The (escaped) reason if ``status`` is a refusal's status line, else None: how API callers tell."""
    if not isinstance(status, str) or not status.startswith(_REFUSED_OPEN + REFUSED):
        return None
    return status[len(_REFUSED_OPEN + REFUSED) : -len("</div>")]


def guarded(outputs: list, status):
    """Decorator for an event handler with ``outputs``: a ``UserError`` it raises becomes a refusal answer
    (module docstring): ``gr.skip()`` for every output but ``status``, which shows the reason."""
    import gradio as gr

    at = next(i for i, component in enumerate(outputs) if component is status)

    def decorate(fn):
        @functools.wraps(fn)  # keeps the signature: Gradio injects gr.Request by its annotation
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as exc:
                values = [gr.skip()] * len(outputs)
                values[at] = refusal_html(str(exc))
                return values if len(values) > 1 else values[0]

        return wrapper

    return decorate


def shortcuts_markdown() -> str:
    rows = "\n".join(f"| <kbd>{k}</kbd> | {what} |" for k, what in SHORTCUTS)
    return "| key | action |\n|---|---|\n" + rows


def build_app(cfg: AnnotateConfig, db: Database):
    """The ``gr.Blocks`` app (not launched). Tabs a user may not use are hidden *and* refused server-side."""
    import gradio as gr

    from annotation_ui import page_admin, page_annotate, page_arena

    ctx = AppContext(cfg=cfg, db=db)
    with gr.Blocks(title="codealign annotation", analytics_enabled=False) as demo:
        who = gr.Markdown(elem_id="who")
        with gr.Tabs():
            with gr.Tab("Annotate", id="annotate"):
                annotate = page_annotate.build(ctx)
            with gr.Tab("Arena", id="arena", visible=False) as arena_tab:
                arena = page_arena.build(ctx)
            with gr.Tab("Admin", id="admin", visible=False) as admin_tab:
                admin = page_admin.build(ctx)
        load_outputs = [who, arena_tab, admin_tab, arena.policy_a, arena.policy_b]

        @guarded(load_outputs, who)
        def on_load(request: gr.Request):
            with ctx.read_session() as session:
                user = ctx.user(session, request)
                from annotation_ui.arena import arena_policies

                policies = (
                    arena_policies(session, cfg.arena_split) if user.role in ("reviewer", "admin") else []
                )
            return (
                f"Logged in as **{html.escape(user.name)}** ({user.role}) &middot; [log out](logout)",
                gr.Tab(visible=user.role in ("reviewer", "admin")),
                gr.Tab(visible=user.role == "admin"),
                gr.Dropdown(choices=policies, value=policies[0] if policies else None),
                gr.Dropdown(choices=policies, value=policies[1] if len(policies) > 1 else None),
            )

        demo.load(on_load, outputs=load_outputs, api_visibility="private")
        demo.load(annotate.load, outputs=annotate.outputs, api_visibility="private", queue=False)
        # Only users of the role see these tabs, so only they can select them (the handlers check anyway).
        arena_tab.select(
            arena.fill, inputs=arena.fill_inputs, outputs=arena.fill_outputs, api_visibility="private"
        )
        admin_tab.select(admin.report, outputs=admin.outputs, api_visibility="private")
    return demo


@dataclass
class LaunchedApp:
    url: str
    demo: object  # gr.Blocks; call .close() to stop


def launch_app(
    cfg: AnnotateConfig, db: Database, *, host: str | None = None, port: int | None = None, block: bool = True
) -> LaunchedApp:
    """Serve the app. Guarantees: auth on, run history and monitoring off, no share link, the SQLite DB
    directory blocked from file serving, the routes of :mod:`annotation_ui.guard` (login back-off, no uploads,
    nothing for strangers). Non-guarantee: TLS (put a reverse proxy in front, see docs)."""
    demo = build_app(cfg, db)
    demo.queue(default_concurrency_limit=8)

    def verify(name: str, password: str) -> bool:
        with db.session() as session:
            return authenticate(session, name, password) is not None

    async def check_login(name: str, password: str) -> bool:
        import anyio

        # argon2 costs ~0.1 s of CPU on purpose; off the event loop so logins do not stall other users
        return await anyio.to_thread.run_sync(verify, name, password)

    blocked = []
    if db.sqlite_path():
        blocked.append(str(Path(db.sqlite_path()).resolve().parent))

    from starlette.middleware import Middleware

    from annotation_ui.guard import Guard
    from annotation_ui.render import page_css

    guard = Middleware(
        Guard,
        login_failures_per_account=cfg.login_failures_per_account,
        login_failures_per_address=cfg.login_failures_per_address,
        max_streams_per_session=cfg.max_streams_per_session,
    )

    host, port = host or cfg.host, port if port is not None else cfg.port
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            auth=check_login,
            auth_message="codealign annotation: log in with the account your admin created.",
            share=False,
            run_history=False,
            enable_monitoring=False,
            footer_links=[],
            blocked_paths=blocked,
            max_file_size="1mb",
            root_path=cfg.root_path or None,
            ssr_mode=False,
            show_error=True,
            quiet=True,  # Gradio's own lines include "set `share=True`" advice, wrong for this app
            prevent_thread_lock=True,
            css=page_css(),
            head=f"<script>{_SHORTCUT_JS}</script>",
            app_kwargs={"middleware": [guard]},
        )
    except OSError as exc:  # port taken, address not local, ...
        raise UserError(f"cannot serve on {host}:{port} ({exc}); pick another --port or --host") from None
    if block:
        print(f"codealign annotate: serving on {demo.local_url} (Ctrl+C stops)", flush=True)
        demo.block_thread()
    return LaunchedApp(url=demo.local_url, demo=demo)
