"""Multi-user rooms: the wire protocol (pure), the brokers that carry room events (in memory or Redis)."""

from .broker import Broker, MemoryBroker, RedisBroker, make_broker
from .protocol import RoomProtocolError, parse_room_message, valid_room_id

__all__ = ["Broker", "MemoryBroker", "RedisBroker", "make_broker", "RoomProtocolError", "parse_room_message",
           "valid_room_id"]
