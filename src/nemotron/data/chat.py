"""Chat rendering and assistant loss masks for SFT.

Templates render in a sandboxed Jinja environment set up like HF ``apply_chat_template``
(trim_blocks, lstrip_blocks, ``tojson``, ``raise_exception``, ``strftime_now``, the
``{% generation %}`` tag), so a tokenizer's own template renders the same text here as in
transformers, without importing transformers.

Masks come from rendering prefixes, never from searching strings. For each trained assistant
message i of a sample:

- ``A`` = render(messages[:i]), ``G`` = render(messages[:i], add_generation_prompt=True),
  ``F`` = render(messages[:i+1]), ``full`` = render(sample);
- tokens(A) must be a prefix of tokens(F) and tokens(F) a prefix of tokens(full), else the row
  is rejected with a ``PrefixMismatch`` naming it;
- the loss starts after the longest common token prefix of G and F (the assistant header and
  whatever the generation prompt pre-fills belong to the prompt) and ends with the last
  end-of-turn token (``<|im_end|>``) inside F; tokens after it (the newline) are not trained.

When assistant turns carry reasoning, a conversation becomes one sample per user turn (the
history up to that turn's answer, loss only on the answer), because templates drop the
reasoning of earlier turns: each reasoning trace is trained exactly once.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
_SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "tool": "tool"}
_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


class PrefixMismatch(ValueError):
    """Rendering a prefix of a conversation did not give a prefix of its full rendering."""


def compile_template(text: str) -> Any:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """``{% generation %}...{% endgeneration %}`` renders its body (HF's marker tag)."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, **kw: Any) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, **kw)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(text)


class ChatRenderer:
    def __init__(self, template: str, special_tokens: dict[str, str] | None = None):
        self.template = compile_template(template)
        self.special_tokens = dict(special_tokens or {})

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
    ) -> str:
        return self.template.render(
            messages=messages,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            **self.special_tokens,
        )


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                parts.append(str(part.get("text", "")))
            else:
                raise ValueError(f"unsupported content part {str(part)[:60]!r}")
        return "".join(parts)
    raise ValueError(f"content is {type(content).__name__}, expected a string")


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise ValueError("tool_calls must be a list")
    out = []
    for call in calls:
        if not isinstance(call, dict):
            raise ValueError("a tool call must be an object")
        fn = call.get("function", call)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ValueError("a tool call needs function.name")
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                parsed = json.loads(args) if args.strip() else {}
                args = parsed if isinstance(parsed, dict) else args
            except ValueError:
                pass  # keep the raw string; the template prints it as is
        out.append({"type": "function", "function": {"name": fn["name"], "arguments": args or {}}})
    return out


def normalize_messages(raw: Any) -> list[dict[str, Any]]:
    """Messages in one shape for templates; ValueError (the reason) for unusable rows."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("messages must be a non-empty list")
    messages = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("each message must be an object")
        if "role" not in item and "from" in item:  # ShareGPT
            item = {
                "role": _SHAREGPT_ROLES.get(item["from"], item["from"]),
                "content": item.get("value"),
            }
        role = item.get("role")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (use {', '.join(ROLES)})")
        message: dict[str, Any] = {"role": role, "content": _text(item.get("content"))}
        if role == "assistant":
            reasoning = next((item[k] for k in _REASONING_KEYS if item.get(k)), None)
            if reasoning is not None:
                message["reasoning_content"] = _text(reasoning)
            if item.get("tool_calls"):
                message["tool_calls"] = _tool_calls(item["tool_calls"])
        if role == "tool":
            for key in ("name", "tool_call_id"):
                if item.get(key) is not None:
                    message[key] = item[key]
        messages.append(message)
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant message to train on")
    return messages


def sample_plan(messages: list[dict[str, Any]], split_turns: bool) -> list[tuple[int, list[int]]]:
    """Samples of a conversation as (number of messages, indices of trained assistant turns).

    Without reasoning (or with ``split_turns`` off): the whole conversation, every assistant
    turn trained. With reasoning: one sample per user turn, training only that turn's answer.
    """
    assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    reasoning = any(messages[i].get("reasoning_content") for i in assistants)
    if not (split_turns and reasoning):
        return [(len(messages), assistants)]
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    plan = []
    for k, user in enumerate(users):
        end = users[k + 1] if k + 1 < len(users) else len(messages)
        trained = [i for i in assistants if user < i < end]
        if trained:
            plan.append((end, trained))
    return plan


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class ConversationEncoder:
    """Token ids and a per-token loss mask (1 = trained) for one sample of a conversation.

    The full rendering is encoded once. A prefix boundary that touches an added token of the
    full encoding (``<|im_start|>``, ``<think>``...) is a token boundary by construction (the
    tokenizer splits added tokens out before anything else), so the prefix's tokens are the
    full tokens up to there; any other boundary is checked by encoding the prefix itself.
    """

    def __init__(self, renderer: ChatRenderer, tokenizer: Any, end_of_turn_id: int | None):
        self.renderer = renderer
        self.tokenizer = tokenizer
        self.eot = end_of_turn_id
        self.added_ids = frozenset(int(i) for i in tokenizer.get_added_tokens_decoder())

    def _boundaries(self, ids: list[int], offsets: list[tuple[int, int]]) -> dict[int, int]:
        """char position -> token index, for positions right before or after an added token."""
        at: dict[int, int] = {}
        for t, token_id in enumerate(ids):
            if token_id in self.added_ids:
                start, end = offsets[t]
                at.setdefault(start, t)
                at[end] = t + 1
        return at

    def _prefix_tokens(
        self, text: str, full: list[int], at: dict[int, int], common_only: bool = False
    ) -> int:
        """How many leading tokens of ``full`` the prefix ``text`` accounts for.

        ``common_only``: the length of the common token prefix (the generation prompt may
        pre-fill text the answer does not start with); else the prefix must match exactly.
        """
        if len(text) in at and not common_only:
            return at[len(text)]
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if common_only:
            return _common_prefix(ids, full)
        if full[: len(ids)] != ids:
            raise PrefixMismatch(
                "the tokens of a rendered prefix are not a prefix of the full tokens "
                "(the tokenizer merges across the turn boundary)"
            )
        return len(ids)

    def encode(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        trained: list[int],
    ) -> tuple[list[int], list[int]]:
        render = self.renderer.render
        full_text = render(messages, tools)
        encoding = self.tokenizer.encode(full_text, add_special_tokens=False)
        full = encoding.ids
        at = self._boundaries(full, encoding.offsets)
        mask = [0] * len(full)
        for i in trained:
            before = render(messages[:i], tools)
            prompt = render(messages[:i], tools, add_generation_prompt=True)
            turn = render(messages[: i + 1], tools)
            if not turn.startswith(before) or not full_text.startswith(turn):
                raise PrefixMismatch(
                    f"rendering messages[:{i}] is not a prefix of the rendering with message "
                    f"{i} and after (the template changes earlier turns)"
                )
            t_before = self._prefix_tokens(before, full, at)
            t_turn = self._prefix_tokens(turn, full, at)
            shared = len(os.path.commonprefix([prompt, turn]))
            if shared in at:
                t_prompt = at[shared]
            else:
                t_prompt = self._prefix_tokens(prompt, full[:t_turn], at, common_only=True)
            start = max(t_before, t_prompt)
            end = t_turn
            if self.eot is not None:
                for j in range(t_turn - 1, start - 1, -1):
                    if full[j] == self.eot:
                        end = j + 1
                        break
            for j in range(start, end):
                mask[j] = 1
        return full, mask
