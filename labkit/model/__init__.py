"""The simulated model: latency profiles, tokenizer, responder and the pure completion plan."""

from .profiles import MODEL_ALIASES, PROFILES, LatencyProfile, UnknownModelError, list_models, resolve_model
from .responder import Responder, default_responder
from .schedule import CompletionPlan, plan_completion, plan_tool_calls
from .tokenizer import count_message_tokens, count_tokens, tokenize

__all__ = [
    "LatencyProfile", "PROFILES", "MODEL_ALIASES", "UnknownModelError", "resolve_model", "list_models",
    "Responder", "default_responder", "CompletionPlan", "plan_completion", "plan_tool_calls",
    "tokenize", "count_tokens", "count_message_tokens",
]
