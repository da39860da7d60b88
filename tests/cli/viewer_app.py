"""An instrumented application for the viewer's tests, run as its own process (``python viewer_app.py STORE
LLM_URL STEP``): it writes to the SQLite store at STORE through obs's ``sqlite:`` sink, as a user's app would.

Steps:

- ``initial``: product events of two users, an exception raised from its cause (frames with source lines),
  an LLM trace (a span and an OpenAI chat completion, through the real ``openai`` client against the local
  LLM server at LLM_URL) with an exception raised inside it, and an event made of hostile HTML.
- ``serve``: stays up with its store open (so the viewer reads while this process writes, in WAL mode);
  each line read from stdin is captured as ``late_arrival`` and flushed, then ``stored <line>`` is printed.
"""

from __future__ import annotations

import sys

import openai

import obs
from obs.integrations.openai import instrument_openai

HOSTILE_NAME = '<img src=x onerror="window.__pwned = 3">'
HOSTILE_SCRIPT = "<script>window.__pwned = 1</script>"
HOSTILE_ATTR = '"><img src=x onerror="window.__pwned = 2">'
HOSTILE_USER = "<b>mallory</b>"


def parse_price(text: str) -> float:
    return float(text)


@obs.capture_errors(reraise=False, properties={"feature": "pricing"})
def checkout(cart: dict[str, str]) -> float:
    try:
        return parse_price(cart["price"])
    except ValueError as exc:
        raise RuntimeError(f"checkout failed for {cart['id']}") from exc


@obs.capture_errors(reraise=False)
def rerank(docs: list[str]) -> list[str]:
    return [docs[5]]  # IndexError, captured inside the trace


def ask(llm_url: str, question: str) -> str:
    client = instrument_openai(openai.OpenAI(base_url=llm_url, api_key="sk-test", max_retries=0))
    with obs.trace("answer_question"):
        with obs.span("retrieve"):
            docs = ["doc-1", "doc-2"]
            rerank(docs)
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
        )
    return reply.choices[0].message.content or ""


def main() -> None:
    store, llm_url, step = sys.argv[1:4]
    obs.init(api_key="phc_viewer_test", sinks=[f"sqlite:{store}"], llm_payloads=True)
    if step == "initial":
        with obs.context(distinct_id="alice"):
            obs.capture("signed_up", {"plan": "pro"})
            checkout({"id": "cart-7", "price": "twelve"})
            ask(llm_url, "What is the capital of France?")
        with obs.context(distinct_id="bob"):
            obs.capture("file_uploaded", {"bytes": 1024, "kind": "csv"})
        obs.capture(HOSTILE_NAME, {"html": HOSTILE_SCRIPT, "attr": HOSTILE_ATTR}, distinct_id=HOSTILE_USER)
    elif step == "serve":
        print("ready", flush=True)
        for line in sys.stdin:
            obs.capture("late_arrival", {"note": line.strip()}, distinct_id="carol")
            if not obs.flush(10):
                sys.exit("not flushed")
            print(f"stored {line.strip()}", flush=True)
    else:
        sys.exit(f"unknown step {step!r}")
    if not obs.shutdown(10):
        sys.exit("not delivered")


if __name__ == "__main__":
    main()
