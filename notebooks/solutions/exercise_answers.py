"""Reference answers to every chapter's exercises (the capstone's are in 09_capstone_solution.ipynb).

Try each exercise first! Each entry replaces the ``...`` in the exercise cell that calls
``check("<name>", ...)``: for ``name = ...`` lines, the expression; for a function whose body is
``...``, the body. The lab's tests run every chapter top to bottom (as *Run All* does) and then each
exercise cell again with these answers, in the same kernel, and require them to pass: so an exercise
keeps working after a chapter has run to its end.
"""

ANSWERS = {
    "00.finish_reason": "[c for c in chunks if c.choices][-1].choices[0].finish_reason",
    "00.chunks_vs_usage": "sum(1 for c in chunks if c.choices and c.choices[0].delta.content)",
    "01.perceived_speedup": "whole_s / streamed.ttft_s",
    "02.parser": '''\
events, data = [], []
for line in raw.decode().replace("\\r\\n", "\\n").split("\\n"):
    if line == "":                              # a blank line ends an event
        if data:
            events.append("\\n".join(data))
        data = []
    elif not line.startswith(":"):              # ":" starts a comment (a keep-alive)
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
return events''',
    "02.header": '"X-Accel-Buffering"',
    "03.reassemble": '''\
by_seq = {t["seq"]: t["content"] for t in tokens}
last = max(by_seq, default=-1)
return "".join(by_seq[i] for i in sorted(by_seq)), [i for i in range(last + 1) if i not in by_seq]''',
    "03.delivered": "sum(1 for ws in members if ws.received)",
    "04.clock": "1000",
    "04.threshold": "0.08",
    "05.vad_wait": 'stopped["audio_end_ms"] - true_end_ms',
    "05.cancel_reason": 'done["response"]["status_details"]["reason"]',
    "06.tpot": "(m.e2e_s - m.ttft_s) / (m.n_tokens - 1)",
    "06.select_model": '([None] + [row["model"] for row in models if row["ttft_ms_p90"] <= 300])[-1]',
    "07.backoff": '''\
ceiling = min(5.0, 0.1 * 2 ** (attempt - 1))
return random.uniform(0, ceiling)             # full jitter''',
    "07.resume_header": '"Last-Event-ID"',
    "08.newest": 'return max(ids, key=lambda i: tuple(int(part) for part in i.split("-")))',
    "08.freeze": 'rows[0]["join_ms"]',
}
