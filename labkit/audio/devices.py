"""Is there a microphone (or a speaker)? Answered without crashing, with a reason when not.

On Linux the ``sounddevice`` wheel needs the system's PortAudio library (Debian: ``libportaudio2``);
without it, ``import sounddevice`` raises ``OSError``. With PortAudio but no sound card (CI,
servers, containers) there are simply no devices. Both cases are normal here: the notebooks then
play a WAV file at real-time pace instead.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AudioStatus", "audio_status", "import_sounddevice"]


@dataclass(frozen=True)
class AudioStatus:
    has_input: bool
    has_output: bool
    reason: str          # one line: why not, or which devices

    def __str__(self) -> str:
        return self.reason


def import_sounddevice():
    """The ``sounddevice`` module, or an ``OSError``/``ImportError`` with a one-line fix in its message."""
    try:
        import sounddevice
    except OSError as e:
        raise OSError(f"PortAudio is not installed ({e}); on Debian/Ubuntu: sudo apt-get install libportaudio2") from None
    except ImportError:
        raise ImportError("the sounddevice package is missing: pip install sounddevice") from None
    return sounddevice


def audio_status() -> AudioStatus:
    try:
        sd = import_sounddevice()
    except (OSError, ImportError) as e:
        return AudioStatus(False, False, f"no audio devices: {e}")
    try:
        devices = list(sd.query_devices())
    except Exception as e:                       # PortAudioError and friends
        return AudioStatus(False, False, f"no audio devices: PortAudio could not list them ({e})")
    inputs = [d["name"] for d in devices if d.get("max_input_channels", 0) > 0]
    outputs = [d["name"] for d in devices if d.get("max_output_channels", 0) > 0]
    if not inputs and not outputs:
        return AudioStatus(False, False, "no audio devices: PortAudio found no sound card")
    reason = f"input: {inputs[0] if inputs else 'none'}; output: {outputs[0] if outputs else 'none'}"
    return AudioStatus(bool(inputs), bool(outputs), reason)
