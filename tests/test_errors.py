"""The five protocol errors that carry ``(code, message)`` share one base, so one handler renders them all."""

import pytest

from labkit.clients import ChatError
from labkit.protocol.app_chat import ProtocolError
from labkit.protocol.errors import CodedError
from labkit.realtime.session import RealtimeError
from labkit.rooms.protocol import RoomProtocolError
from labkit.streams import StreamGone


@pytest.mark.parametrize("cls, builtin", [(ChatError, RuntimeError), (ProtocolError, ValueError),
                                          (RealtimeError, Exception), (RoomProtocolError, ValueError),
                                          (StreamGone, LookupError)])
def test_each_is_a_coded_error_and_keeps_its_builtin_base(cls, builtin):
    error = cls("bad_thing", "That was bad.")
    assert isinstance(error, CodedError) and isinstance(error, builtin)
    assert error.as_dict() == {"code": "bad_thing", "message": "That was bad."}


def test_chat_error_reads_with_its_code_and_keeps_its_status():
    assert str(ChatError("rate_limited", "Slow down.", status=429)) == "rate_limited: Slow down."
    assert ChatError(None, "Plain.").code is None and str(ChatError(None, "Plain.")) == "Plain."
    assert ChatError("x", "y", status=429).status == 429
