"""openai_client.py PORT MODEL_ID: the official `openai` Python package
against greta serve on loopback: plain and streamed chat and completions,
usage counts, stop strings, seeds, and the errors it raises for bad
requests. Prints ok/FAIL lines (checks.py)."""
import sys

import openai

from checks import check, finish

port, model = int(sys.argv[1]), sys.argv[2]
client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=60, max_retries=0)
messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say something."}]

# models
listed = [m.id for m in client.models.list()]
check("models.list names the model", listed == [model], f"got {listed}")

# plain chat
chat = client.chat.completions.create(model=model, messages=messages, max_tokens=12, seed=7, temperature=0.9)
choice = chat.choices[0]
check("chat: one choice, role assistant", len(chat.choices) == 1 and choice.message.role == "assistant", str(chat))
check("chat: finish_reason stop or length", choice.finish_reason in ("stop", "length"), choice.finish_reason)
check("chat: usage counts add up", chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
      and chat.usage.prompt_tokens > 0 and 0 < chat.usage.completion_tokens <= 12, str(chat.usage))
check("chat: object and id", chat.object == "chat.completion" and chat.id.startswith("chatcmpl-"), chat.id)

# the same request streamed: the same text, chunk by chunk, then usage
chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=12, seed=7, temperature=0.9,
                                             stream=True, stream_options={"include_usage": True}))
streamed = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
check("streamed chat text equals the plain answer (same seed)", streamed == choice.message.content,
      f"{streamed!r} vs {choice.message.content!r}")
check("stream: first chunk carries the role", chunks[0].choices[0].delta.role == "assistant", str(chunks[0]))
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
check("stream: one finish_reason, equal to the plain one", finishes == [choice.finish_reason], str(finishes))
check("stream: the last chunk has the usage and no choices",
      not chunks[-1].choices and chunks[-1].usage is not None
      and chunks[-1].usage.completion_tokens == chat.usage.completion_tokens, str(chunks[-1]))
check("stream: chunk objects", all(c.object == "chat.completion.chunk" for c in chunks), "")

# seeds: another seed may differ; the same seed again is the same text
again = client.chat.completions.create(model=model, messages=messages, max_tokens=12, seed=7, temperature=0.9)
check("same seed, same answer", again.choices[0].message.content == choice.message.content, "")

# greedy: temperature 0
g1 = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
g2 = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0, seed=99)
check("temperature 0 is greedy (seed does not matter)", g1.choices[0].message.content == g2.choices[0].message.content, "")

# completions, plain and streamed
comp = client.completions.create(model=model, prompt="Once upon a time", max_tokens=10, seed=3)
check("completion: text and usage", comp.object == "text_completion" and comp.usage.completion_tokens > 0
      and comp.choices[0].finish_reason in ("stop", "length"), str(comp))
parts = list(client.completions.create(model=model, prompt="Once upon a time", max_tokens=10, seed=3, stream=True))
check("streamed completion text equals the plain one", "".join(p.choices[0].text for p in parts if p.choices)
      == comp.choices[0].text, "")

# stop string: the text ends before it and finish_reason is stop
full = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, seed=5).choices[0].text
stop = full[len(full) // 2:len(full) // 2 + 2] if len(full) >= 4 else None
if check("a text long enough to cut with a stop string", stop is not None and stop.strip() != "", repr(full)):
    cut = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, seed=5, stop=[stop])
    want = full[:full.find(stop)]
    check("stop string: text cut before it, finish_reason stop", cut.choices[0].text == want
          and cut.choices[0].finish_reason == "stop", f"{cut.choices[0].text!r} vs {want!r}")

# errors the client raises
try:
    client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=4)
    check("unknown model raises NotFoundError", False, "no exception")
except openai.NotFoundError as e:
    check("unknown model raises NotFoundError", e.status_code == 404 and "no-such-model" in str(e), str(e))
try:
    client.chat.completions.create(model=model, messages=messages, max_tokens=4, n=2)
    check("n=2 raises BadRequestError", False, "no exception")
except openai.BadRequestError as e:
    check("n=2 raises BadRequestError", e.status_code == 400 and e.body.get("param") == "n", str(e.body))
try:
    client.chat.completions.create(model=model, messages=[], max_tokens=4)
    check("empty messages raise BadRequestError", False, "no exception")
except openai.BadRequestError as e:
    check("empty messages raise BadRequestError", e.body.get("param") == "messages", str(e.body))
finish()
