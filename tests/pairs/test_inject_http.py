"""POVID pairs with a chat-model injector over real HTTP (a scripted server): the rewrite prompt carries the kind's
instruction and the ground truth; rewrites are journalled so a rerun sends nothing."""

from __future__ import annotations

import re

from vlpref.data.store import read_records
from vlpref.models.remote import RemoteEndpoint
from vlpref.models.vlm import Generation
from vlpref.pairs.build import PairsConfig, build_pairs
from vlpref.pairs.inject import InjectorConfig
from vlpref.serve import build_app
from vlpref.serve import serve_in_thread as running
from vlpref.world.tasks import build_split


def test_povid_with_chat_injector(tmp_path):
    prompts = tmp_path / "prompts"
    build_split(prompts, "prefs", 1, tasks=("describe", "pope"))
    seen = []

    def rewrite(chats, params):
        out = []
        for chat in chats:
            text = chat.turns[-1].text
            seen.append(text)
            answer = re.search(r"Correct answer: (.*)", text).group(1)
            out.append(Generation(text=f'"{answer} There is also a knife."', token_ids=[1], finish_reason="stop"))
        return out

    with running(build_app("rewriter", rewrite)) as url:
        config = PairsConfig(strategy="povid", prompts=str(prompts), injection_kinds=["object", "relation"],
                             injector=InjectorConfig(backend="openai", endpoint=RemoteEndpoint(
                                 base_url=url, model="rewriter", api_key_env=None)))
        pairs = build_pairs(config, tmp_path / "pairs")
        n_requests = len(seen)
        again = build_pairs(config, tmp_path / "pairs")
    assert again == pairs and len(seen) == n_requests  # all rewrites came from the journal
    describe = [p for p in pairs if p.prompt_id.endswith("describe")]
    assert len(describe) == 2 and all(p.rejected == p.chosen + " There is also a knife." for p in describe)
    assert {p.provenance["injection"] for p in describe} == {"object", "relation"}
    assert any("NOT in the image" in s for s in seen)  # the object kind's instruction was sent
    flips = [p for p in pairs if p.provenance["injection"] == "flip"]
    assert flips and len(pairs) == len(describe) + len(flips)
    assert len(read_records(tmp_path / "pairs")) == len(pairs)
