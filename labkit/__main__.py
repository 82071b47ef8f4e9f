"""Command line: ``python -m labkit serve`` and ``python -m labkit bench <name> --json PATH``."""

from __future__ import annotations

import argparse
import os
import sys

from .server.state import ServerConfig


def _serve(args: argparse.Namespace) -> int:
    from .server.runner import run_forever

    import resource

    from .auth import is_loopback

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))      # a server holds one socket per client

    lab_token = os.environ.get("LAB_TOKEN") or None
    config = ServerConfig(api_key=args.api_key, rate_limit_rpm=args.rate_limit_rpm, time_scale=args.time_scale,
                          upstream_base_url=args.upstream_base_url, upstream_http=args.upstream_http,
                          upstream_api_key=os.environ.get("OPENAI_API_KEY") if args.upstream_base_url else None,
                          lab_token=lab_token, max_streams_per_user=args.max_streams_per_user,
                          stream_limit_policy=args.stream_limit_policy, user_requests_per_min=args.user_rpm,
                          redis_url=args.redis_url or os.environ.get("REDIS_URL") or None,
                          room_lease_s=args.room_lease_s, resume_grace_s=args.resume_grace_s,
                          instructor_key=os.environ.get("LAB_INSTRUCTOR_KEY") or None,
                          access_log=not args.no_access_log)
    if not is_loopback(args.host) and lab_token:
        print(f"listening on {args.host}: only clients with LAB_TOKEN (or a user token made from it) get in.",
              file=sys.stderr)
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.app == "tutorial":
        return _run_server(run_forever, config, args.host, args.port, _tutorial_app,
                           "tutorial-style (blocking) server")
    return _run_server(run_forever, config, args.host, args.port, None, "labkit server", args.workers)


def _tutorial_app(config: ServerConfig):
    """The source tutorial's blocking SSE server over ``config.upstream_base_url`` (chapter 06)."""
    from .tutorial import create_tutorial_app

    if not config.upstream_base_url:
        raise OSError(0, "the tutorial app needs --upstream-base-url (a model server's /v1)")
    return create_tutorial_app(config.upstream_base_url)


def _run_server(run, *args) -> int:
    """Run a foreground server; a refusal or a port in use is one clear line, not a traceback."""
    try:
        run(*args)
    except PermissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _classroom(args: argparse.Namespace) -> int:
    import signal

    from .classroom import run_classroom

    signal.signal(signal.SIGTERM, signal.default_int_handler)       # stop cleanly on SIGTERM too
    return _run_server(run_classroom, args.host, args.port, args.token or os.environ.get("LAB_TOKEN") or None,
                       not args.no_qr, os.environ.get("LAB_INSTRUCTOR_KEY") or None, args.https)


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, e.g. 1,5,10: {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("each level is a number of sessions, 1 or more")
    return levels


def _bench(args: argparse.Namespace) -> int:
    from .bench import run_benchmark

    return run_benchmark(args.name, args.json, quick=args.quick, transport=args.transport,
                         concurrency=args.concurrency)


def _notebooks(args: argparse.Namespace) -> int:
    from .notebooks import clean_notebooks, execute_notebooks

    return (execute_notebooks if args.action == "execute" else clean_notebooks)(args.paths)


def _data(args: argparse.Namespace) -> int:
    from .speechdata import generate

    wav, labels = generate()
    print(f"wrote {wav} and {labels}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit", description="The Realtime AI Lab's toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the local OpenAI-compatible backend and chat app")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply every simulated delay (default: 1)")
    p.add_argument("--api-key", default=None, help="require this key on /v1 (default: accept any key)")
    p.add_argument("--rate-limit-rpm", type=float, default=None, help="requests per minute per key on /v1")
    p.add_argument("--upstream-base-url", default=None, metavar="URL",
                   help="where the chat routes get tokens (default: this server's own /v1; "
                        "the key, if any, comes from OPENAI_API_KEY)")
    p.add_argument("--no-access-log", action="store_true",
                   help="no log line per request (the benchmarks measure servers without one)")
    p.add_argument("--upstream-http", choices=["aiohttp", "httpx"], default="aiohttp",
                   help="the HTTP transport of the chat routes' AsyncOpenAI client (default: aiohttp)")
    p.add_argument("--max-streams-per-user", type=int, default=None, metavar="N",
                   help="replies one user may stream at once (default: no limit)")
    p.add_argument("--stream-limit-policy", choices=["reject", "replace"], default="reject",
                   help="over the limit: refuse with 429 (reject) or cancel the user's oldest reply (replace)")
    p.add_argument("--user-rpm", type=float, default=None, metavar="N",
                   help="requests per minute per user on the chat routes (token bucket; default: no limit)")
    p.add_argument("--redis-url", default=None, metavar="URL",
                   help="share rooms with other server processes through Redis (default: $REDIS_URL, else in memory)")
    p.add_argument("--resume-grace-s", type=float, default=5.0, metavar="S",
                   help="how long a reply nobody reads keeps generating, waiting for its client to come back")
    p.add_argument("--room-lease-s", type=float, default=3.0, metavar="S",
                   help="how long a dead process keeps a room's AI before another process takes over")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="server processes on one port (N > 1 needs Redis: rooms and resumable streams are shared)")
    p.add_argument("--app", choices=["lab", "tutorial"], default="lab",
                   help="tutorial: the source tutorial's blocking SSE server, for comparison (chapter 06)")
    p.set_defaults(func=_serve)

    c = sub.add_parser("classroom", help="serve the lab to a class on the local network (prints a join link)")
    c.add_argument("--host", default="0.0.0.0", help="the address students reach (default: every interface)")
    c.add_argument("--port", type=int, default=8000, help="the port students reach (0: any free port)")
    c.add_argument("--token", default=None, help="the class token (default: $LAB_TOKEN, else a fresh random one)")
    c.add_argument("--no-qr", action="store_true", help="do not print the QR code")
    c.add_argument("--https", action="store_true",
                   help="serve over https with a self-signed certificate made now (phones need it for the microphone)")
    c.set_defaults(func=_classroom)

    from .bench import BENCHMARKS
    b = sub.add_parser("bench", help="run a benchmark and write its results as JSON")
    b.add_argument("name", choices=sorted(BENCHMARKS))
    b.add_argument("--json", required=True, metavar="PATH", help="where to write the results")
    b.add_argument("--quick", action="store_true", help="a smaller run (for CI smoke tests)")
    b.add_argument("--transport", choices=["websocket", "webrtc"], default=None,
                   help="realtime: also measure answer audio under 0/2/5/10%% loss over this transport "
                        "(webrtc: and voice-to-voice turns over WebRTC instead of the WebSocket's)")
    b.add_argument("--concurrency", type=_levels, default=None, metavar="N,N,...",
                   help="realtime: N sessions speaking one utterance together at each level, e.g. 1,5,10,20,40 "
                        "(writes the curve as a PNG beside the JSON)")
    b.set_defaults(func=_bench)

    d = sub.add_parser("data", help="rebuild the lab's data")
    d.add_argument("what", choices=["speech"], help="speech: the labelled speech set in labkit/data/speech/")
    d.set_defaults(func=_data)

    n = sub.add_parser("notebooks", help="notebook maintenance")
    nsub = n.add_subparsers(dest="action", required=True)
    for action, text in (("execute", "run offline and store fresh outputs (what is committed)"),
                         ("clean", "strip outputs and execution counts")):
        c = nsub.add_parser(action, help=text)
        c.add_argument("paths", nargs="+")
        c.set_defaults(func=_notebooks)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
