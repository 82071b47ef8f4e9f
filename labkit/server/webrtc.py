"""``POST /v1/realtime/calls`` (WebRTC): OpenAI's browser path to the Realtime API, emulated offline.

Signalling is one HTTP request: the client's SDP offer in (a raw ``application/sdp`` body with
``?model=``, or ``multipart/form-data`` with parts ``sdp`` and an optional ``session`` JSON, as the
official SDK's ``client.realtime.calls.create`` sends it), ``201`` with the SDP answer out and
``Location: /v1/realtime/calls/{call_id}``. ``POST /v1/realtime/calls/{call_id}/hangup`` ends it.
Authentication is the WebSocket's (:func:`labkit.server.realtime.open_session`): API key or ephemeral key.

The peer (aiortc) then carries:

* the ``oai-events`` data channel: the WebSocket protocol's JSON client and server events, driven by
  the same :class:`~labkit.server.realtime.SessionDriver` and :class:`RealtimeSession` machine, except
  that answer audio is not sent as ``response.output_audio.delta`` events (as on OpenAI's WebRTC);
* microphone audio in, Opus, decoded by aiortc (48 kHz), resampled to 24 kHz with soxr, appended to
  the machine's input buffer, where server VAD runs;
* answer audio out, an Opus track paced in real time by :class:`~labkit.server.webrtc_call.OutputTrack`, whose bookkeeping
  (:class:`labkit.realtime.playout.OutputPlayout`) produces ``output_audio_buffer.started/stopped``;
  a barge-in or the client's ``output_audio_buffer.clear`` stops playback, sends
  ``output_audio_buffer.cleared`` and truncates the answer where playback really was.

ICE: no STUN/TURN servers (everything is on one machine or one LAN): host candidates only.

This module holds the routes; a call itself (:mod:`labkit.server.webrtc_call`, which needs aiortc and
PyAV, about 0.45 s to import) is imported when the first call is made, not when the server starts.
"""

from __future__ import annotations

import json
import logging
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..ephemeral import EphemeralKeys, KeyRefused, check_realtime_key, handshake_credentials
from ..protocol.openai_chat import error_body
from ..realtime.session import RealtimeError
from .realtime import SessionRefused, open_session
from .state import ModelServerConfig

__all__ = ["create_webrtc_router", "WebRTCCalls"]

log = logging.getLogger(__name__)


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, param=param, code=code), status_code=status)


class WebRTCCalls(dict):
    """The open calls by id; :meth:`aclose` hangs them all up (the server's shutdown)."""

    async def aclose(self) -> None:
        for call in list(self.values()):
            await call.close()
        self.clear()


def create_webrtc_router(config: ModelServerConfig, keys: EphemeralKeys, calls: WebRTCCalls | None = None) -> APIRouter:
    router = APIRouter()
    calls = calls if calls is not None else WebRTCCalls()

    @router.post("/v1/realtime/calls")
    async def create_call(request: Request):
        credentials = handshake_credentials(request.headers, [])
        offer, preset, problem = await _read_offer(request)
        if problem is not None:
            return problem
        model = request.query_params.get("model") or (preset or {}).get("model")
        try:
            session, profile = open_session(credentials.key, credentials.beta, model, config, keys)
            if preset is not None:
                session.configure(preset, beta=credentials.beta)
        except SessionRefused as e:
            return JSONResponse(e.body, status_code=e.status)
        except RealtimeError as e:
            return _error(400, e.message, param=e.param, code=e.code)
        from .webrtc_call import WebRTCCall          # aiortc and PyAV: imported by the first call, not at start-up
        call = WebRTCCall("rtc_" + secrets.token_hex(12), session, profile, config)
        try:
            answer = await call.answer(offer)
        except ValueError as e:                       # aiortc could not use the offer
            await call.close()
            return _error(400, f"Invalid SDP offer: {e}", param="sdp", code="invalid_offer")
        calls[call.id] = call
        call.on_closed = lambda: calls.pop(call.id, None)
        return Response(answer, status_code=201, media_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call.id}"})

    @router.post("/v1/realtime/calls/{call_id}/hangup")
    async def hangup(call_id: str, request: Request):
        try:
            check_realtime_key(handshake_credentials(request.headers, []).key, config.api_key, keys)
        except KeyRefused as e:
            return _error(e.status, e.message, code=e.code)
        call = calls.pop(call_id, None)
        if call is None:
            return _error(404, f"Call '{call_id}' not found.", param="call_id", code="call_not_found")
        await call.close()
        return Response(status_code=200)

    return router


async def _read_offer(request: Request) -> tuple[str, dict | None, JSONResponse | None]:
    """(offer SDP, session JSON or None, None) — or an OpenAI error response as the third item."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    preset = None
    if kind == "multipart/form-data":
        try:
            form = await request.form()
        except Exception as e:                        # a malformed multipart body
            return "", None, _error(400, f"Could not parse the multipart body: {e}")
        sdp = form.get("sdp")
        raw_session = form.get("session")
        sdp = (await sdp.read()).decode("utf-8", "replace") if hasattr(sdp, "read") else sdp
        if raw_session is not None:
            raw_session = (await raw_session.read()) if hasattr(raw_session, "read") else raw_session
            try:
                preset = json.loads(raw_session)
            except ValueError:
                return "", None, _error(400, "The 'session' part is not valid JSON.", param="session")
            if not isinstance(preset, dict):
                return "", None, _error(400, "Invalid type for 'session': expected an object.", param="session")
    elif kind == "application/sdp":
        sdp = (await request.body()).decode("utf-8", "replace")
    else:
        return "", None, _error(400, "Send the SDP offer as 'application/sdp', or as the 'sdp' part of a "
                                     "'multipart/form-data' body.", param="sdp")
    if not sdp or not sdp.strip():
        return "", None, _error(400, "Missing required parameter: 'sdp'.", param="sdp",
                                code="missing_required_parameter")
    if not sdp.lstrip().startswith("v=0") or "\nm=audio " not in sdp.replace("\r\n", "\n"):
        return "", None, _error(400, "Invalid SDP offer: expected a session description (v=0) with an audio "
                                     "media section (m=audio).", param="sdp", code="invalid_offer")
    return sdp, preset, None
