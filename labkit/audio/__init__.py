"""Audio in and out: PCM16 helpers, resampling, WAV files, sources (microphone, file, synthetic),
playback, and offline speech synthesis. Importing it never needs a sound card."""

from .devices import AudioStatus, audio_status
from .pcm import StreamResampler, pcm16_bytes, resample, to_float32, to_int16
from .playback import play
from .push import PushSource
from .sources import ArraySource, AudioSource, FileSource, MicrophoneSource, SyntheticSource, open_input
from .wav import read_wav, write_wav

__all__ = ["AudioStatus", "audio_status", "StreamResampler", "pcm16_bytes", "resample", "to_float32", "to_int16",
           "play", "ArraySource", "AudioSource", "FileSource", "MicrophoneSource", "SyntheticSource", "open_input", "PushSource",
           "read_wav", "write_wav"]
