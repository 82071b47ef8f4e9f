"""The local model server: an OpenAI-compatible ``/v1`` API over the simulated model.

A thin adapter: :mod:`labkit.protocol.openai_chat` validates and shapes, :mod:`labkit.model` plans
the reply, and this module only checks auth and rate limits and hands a streamed reply to
:mod:`labkit.server.modelstream`, which writes each token when it is due (one timer for all
streams, chunks from a template). Errors are OpenAI's ``{"error": {...}}`` bodies with OpenAI's
status codes.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..model import UnknownModelError, list_models, resolve_model
from ..model.schema_values import UnsatisfiableSchema
from ..protocol import openai_chat as oc
from ..ratelimit import KeyedBuckets
from .modelstream import ChunkSchedule, ScheduledStream, TokenClock
from .planning import ContextLengthExceeded, plan_reply
from .state import ModelServerConfig, ServerStats
from .streaming import PushedEventStream

__all__ = ["create_model_router", "openai_error_response"]


def openai_error_response(err: oc.APIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def create_model_router(config: ModelServerConfig, stats: ServerStats) -> APIRouter:
    router = APIRouter()
    clocks: list[TokenClock] = []            # one for the server's loop, made by its first stream
    buckets = (KeyedBuckets(rate=config.rate_limit_rpm / 60.0, capacity=max(1.0, config.rate_limit_rpm / 60.0))
               if config.rate_limit_rpm else None)

    def check_auth(request: Request) -> str:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if config.api_key is None:
            return key or "anonymous"
        if not key:
            raise oc.APIError(401, "You didn't provide an API key. You need to provide your API key in an "
                                   "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if key != config.api_key:
            raise oc.APIError(401, f"Incorrect API key provided: {_redact(key)}.", code="invalid_api_key")
        return key

    def check_rate(key: str) -> None:
        if buckets is None:
            return
        ok, wait_s = buckets.take(key, time.monotonic())
        if not ok:
            wait_ms = max(1, int(wait_s * 1000 + 0.5))
            raise oc.APIError(
                429, f"Rate limit reached for requests: limit {config.rate_limit_rpm:g} per minute. "
                     f"Please try again in {wait_ms}ms.",
                type="requests", code="rate_limit_exceeded",
                headers={"retry-after-ms": str(wait_ms), "retry-after": str(max(1, round(wait_s))),
                         "x-ratelimit-limit-requests": f"{config.rate_limit_rpm:g}",
                         "x-ratelimit-remaining-requests": "0"})

    @router.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @router.get("/v1/models")
    async def models(request: Request) -> dict:
        check_auth(request)
        return {"object": "list", "data": [_model_object(m) for m in list_models()]}

    @router.get("/v1/models/{model_id}")
    async def model(model_id: str, request: Request) -> dict:
        check_auth(request)
        try:
            profile = resolve_model(model_id)
        except UnknownModelError:
            raise _model_not_found(model_id) from None
        return _model_object({"id": model_id, "profile": profile.as_dict()})

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        arrived = asyncio.get_running_loop().time()
        stats.requests += 1
        key = check_auth(request)
        req = oc.parse_chat_request(await request.body())
        try:
            profile = resolve_model(req.model).scaled(config.time_scale)
        except UnknownModelError:
            raise _model_not_found(req.model) from None
        check_rate(key)
        try:
            plan = await plan_reply(req.messages, profile, req.max_tokens, seed=req.seed, temperature=req.temperature,
                                    tools=req.tools, tool_choice=req.tool_choice,
                                    parallel_tool_calls=req.parallel_tool_calls, response_format=req.response_format)
        except ContextLengthExceeded as e:
            raise oc.APIError(400, str(e), param="messages", code="context_length_exceeded") from None
        except UnsatisfiableSchema as e:
            raise oc.APIError(400, f"Invalid schema: {e}.", param="response_format" if req.response_format
                              and not req.tools else "tools", code="invalid_schema") from None
        cid, created = oc.completion_id(), int(time.time())
        if req.stream:
            loop = asyncio.get_running_loop()
            if not clocks or clocks[0].loop is not loop:
                clocks[:] = [TokenClock(loop)]
            clock = clocks[0]
            schedule = ChunkSchedule(plan, req.model, cid, created, req.include_usage, config.fail_after_tokens)
            return PushedEventStream(lambda write: ScheduledStream(schedule, arrived, write, clock, stats,
                                                                   config.heartbeat_s))
        await _sleep_until(arrived + (plan.due_s[-1] if plan.due_s else 0.0))
        stats.tokens_generated += plan.completion_tokens
        return JSONResponse(oc.completion(cid, created, req.model, plan.text, plan.finish_reason, plan.usage,
                                          plan.tool_calls))

    return router


async def _sleep_until(deadline: float) -> None:
    """Sleep to an absolute time on the loop's clock, so delays do not drift as tokens add up."""
    delay = deadline - asyncio.get_running_loop().time()
    await asyncio.sleep(max(0.0, delay))


def _model_not_found(model: str) -> oc.APIError:
    return oc.APIError(404, f"The model `{model}` does not exist or you do not have access to it.",
                       param="model", code="model_not_found")


def _model_object(entry: dict) -> dict:
    return {"id": entry["id"], "object": "model", "created": 1_700_000_000, "owned_by": "labkit",
            "profile": entry["profile"]}


def _redact(key: str) -> str:
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "*" * len(key)
