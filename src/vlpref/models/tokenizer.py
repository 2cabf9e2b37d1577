"""A small word-level tokenizer for tiny test models and the shapes world.

    >>> tok = build_word_tokenizer(["a", "red", "circle"], special_tokens=["<image>"])
    >>> tok.convert_ids_to_tokens(tok("A red <image> circle.")["input_ids"])
    ['a', 'red', '<image>', 'circle', '.']

Why word-level: a tiny model must learn in minutes on a CPU, and a vocabulary of a few hundred whole words makes
every token meaningful. Token boundaries are also stable (a word never merges with its neighbour), so prompt and
response tokenise the same apart as together. The result is a regular `PreTrainedTokenizerFast`: it saves and
reloads through `AutoTokenizer`, with no custom code.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"

# General words: enough for test prompts, reference answers and the importers' fixtures. Anything else maps to <unk>.
BASE_WORDS = """
a an the this that these those is are was were be been am do does did has have had can could will would should
may might must shall not no yes and or but if then so because of in on at to from by with without for about
into over under above below left right next near far between behind front top bottom middle center corner side
i you he she it we they me him her us them my your its our their what which who whom whose where when why how
there here all any some many much more most few less least one two three four five six seven eight nine ten
zero first second third other another each every both either neither only just also very too than as like
image picture photo photograph scene view shows show shown showing see seen look looks describe description
detail details detailed question answer please tell explain count number color colour shape size object objects
thing things item items animal person people man woman child dog cat bird car bus tree house table chair cup
red green blue yellow orange purple pink brown black white gray grey circle square triangle rectangle star
ellipse hexagon diamond cross heart small large big tiny huge medium round flat bright dark light background
foreground sky water grass road wall floor window door book ball box bag hat shirt food plate bowl bottle
phone computer screen sign text word letter line dot point edge area part whole half pair group set
good bad better best worse worst true false correct wrong right real fake same different similar
user assistant model system human gpt
""".split()
# Plurals of the nouns above, so "two circles" is in vocabulary.
NOUNS = """
image picture photo scene view detail question answer color colour shape size object thing item animal person dog
cat bird car bus tree house table chair cup circle square triangle rectangle star ellipse hexagon diamond cross heart
road wall floor window door book ball box bag hat shirt plate bowl bottle phone computer screen sign word letter line
dot point edge area part pair group set side corner
""".split()
BASE_WORDS += [noun + ("es" if noun.endswith(("s", "x", "ch")) else "s") for noun in NOUNS]

PUNCTUATION = list(".,;:!?'\"()[]{}-_/\\*&%$#@+=<>|~`^")
DIGITS = list("0123456789")


def build_word_tokenizer(
    words: Iterable[str] = BASE_WORDS,
    special_tokens: Iterable[str] = (),
    extra_special_tokens: dict[str, str] | None = None,
    eos_token: str = EOS,
    bos_token: str = BOS,
    chat_template: str | None = None,
) -> PreTrainedTokenizerFast:
    """Build a lowercase word-level tokenizer.

    Args:
        words: vocabulary words (lowercase). Duplicates are ignored; unknown words map to `<unk>`.
        special_tokens: architecture tokens (image placeholders, turn markers); never split or lowercased.
        extra_special_tokens: named special tokens that processors read as attributes (Gemma3's `boi_token` …).
        eos_token: end-of-sequence token; for chat models this is the end-of-turn marker generation stops at.
        bos_token: beginning-of-sequence token.
        chat_template: Jinja chat template stored with the tokenizer.
    """
    specials = [PAD, UNK, BOS, EOS, bos_token, eos_token, *special_tokens, *(extra_special_tokens or {}).values()]
    specials = list(dict.fromkeys(specials))  # dedupe, keep order: ids of the core tokens are 0..3
    vocab: dict[str, int] = {}
    for token in [*specials, *PUNCTUATION, *DIGITS, *words]:
        vocab.setdefault(token, len(vocab))

    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    # Whitespace first, then each punctuation mark and digit becomes its own token ("cup." -> "cup", ".").
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    # Decoding joins word tokens with single spaces; special tokens are kept unless skip_special_tokens is set.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    core.add_special_tokens(specials)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=bos_token,
        eos_token=eos_token,
        extra_special_tokens=extra_special_tokens or {},
        padding_side="left",
        chat_template=chat_template,
    )
    return tokenizer
