"""Scores a fixed set of sentences with the reference VADER package.

Writes crates/steer-suites/tests/fixtures/vader_reference.json: the package
version, the sha256 of its lexicon (which must equal the shipped
suites/sentiment/vader_lexicon.txt), and for each sentence the package's
neg, neu, pos and compound scores. The Rust scorer in
crates/steer-suites/src/vader.rs must agree on every sentence.

The Rust scorer leaves out the package's emoji step, so no sentence may hold a
character of the package's emoji lexicon; the script checks this.

`--random N` appends N seeded random word sequences built from the lexicon
and the rule words (negations, boosters, "but", phrases, capitals,
punctuation), for a wider check than the hand-written sentences.

Usage: python tools/make_vader_reference.py [--out PATH] [--random N]
"""

import argparse
import hashlib
import importlib.metadata
import json
import random
from pathlib import Path

from vaderSentiment import vaderSentiment

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "crates" / "steer-suites" / "tests" / "fixtures" / "vader_reference.json"
SHIPPED_LEXICON = REPO_ROOT / "suites" / "sentiment" / "vader_lexicon.txt"
VERSION = "3.3.2"
SEED = 20140601

SENTENCES = [
    # Plain sentences.
    "The book was good.",
    "The weather today is nice and calm.",
    "I love this place.",
    "This is the worst service I have ever had.",
    "The movie was okay.",
    "She felt sad and lonely after the news.",
    "What a wonderful, beautiful day.",
    "The report is due on Tuesday.",
    "He is a terrible, horrible, no good, very bad person.",
    "Thanks for the help, I really appreciate it.",
    "I hate waiting in line.",
    "The food was delicious and the staff were friendly.",
    "It's fine.",
    "Meh.",
    # Negation.
    "The book was not good.",
    "I don't like it.",
    "It isn't bad at all.",
    "Not bad at all",
    "I never liked that song.",
    "VADER is not smart, handsome, nor funny.",
    "Nothing about this is good.",
    "I cannot recommend it.",
    "They aren't happy about the change.",
    "Without a doubt, excellent idea.",
    "Without doubt, an excellent idea.",
    "Without any doubt the best.",
    "Sentiment analysis has never been good.",
    "Sentiment analysis has never been this good!",
    "It was never so bad.",
    "I have never been so happy in my life.",
    "No problem at all.",
    "There is no love here.",
    "No, I am happy.",
    "no no good",
    "He has no money or love left.",
    "I had no food nor joy.",
    "The plan seldom works well.",
    "Despite the rain, we had fun.",
    "The ending wasn't great but it wasn't terrible either.",
    "I can't stand it.",
    "Uh-uh, that is wrong.",
    "It ain't no fun, y'all.",
    # Boosters and dampeners.
    "The book was very good.",
    "The book was extremely good.",
    "This is absolutely the best.",
    "I am so very happy.",
    "It was really really bad.",
    "The service was incredibly slow and deeply disappointing.",
    "The hotel was slightly dirty.",
    "It was barely acceptable.",
    "The plan is somewhat risky.",
    "That's a little sad.",
    "She was hardly happy.",
    "A tremendously good and utterly amazing performance.",
    "He is most certainly wrong.",
    "Very very very good food.",
    # Capitals.
    "The book was GOOD.",
    "The book was VERY good.",
    "VADER is VERY SMART, handsome, and FUNNY.",
    "VADER is VERY SMART, handsome, and FUNNY!!!",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "THIS IS ALL CAPS AND GREAT",
    "Today SUX!",
    "I LOVE it",
    "this is NOT good",
    "NO problem here",
    "The results are VERY bad.",
    "I am SO HAPPY today.",
    "It was a TOTAL disaster",
    "I HATE MONDAYS but I love Fridays",
    "He said OK and left.",
    "The ending was KIND OF sad.",
    "It was NO good at all",
    "ÉNORME succès, très BIEN",
    # "but" clauses.
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "It was good but expensive.",
    "I like it, but I hate the color.",
    "Nice idea, but terrible execution, but good effort.",
    "But I love it.",
    "The food was great but the service was great too.",
    "good good but good good",
    "happy but happy",
    "Good, bad, but good.",
    "It hurts, but it is nice, and it hurts.",
    # "kind of", "sort of", "just enough".
    "The book was only kind of good.",
    "The book was kind of good.",
    "It is kind of bad.",
    "She is a kind person.",
    "Today only kinda sux! But I'll get by, lol",
    "The film was sort of boring.",
    "I was just enough happy to stay.",
    "I think it was kind of good.",
    "It seems sort of ok to me.",
    "The movie sort of sucked.",
    "Be kind.",
    # "least".
    "Roger Dodger is one of the least compelling variations on this theme.",
    "Roger Dodger is at least compelling as a variation on the theme.",
    "This is the very least helpful answer.",
    "Least favorite thing ever.",
    "least good",
    "At least it isn't a horrible book.",
    # Phrases and idioms.
    "With VADER, sentiment analysis is the shit!",
    "Most automated sentiment analysis tools are shit.",
    "On the other hand, VADER is quite bad ass",
    "VADER is such a badass!",
    "That party was the bomb.",
    "He is the bomb",
    "I waited at the bus stop for an hour.",
    "Oh yeah right, like that would work.",
    "Yeah right.",
    "That new policy is the kiss of death for us.",
    "kiss of death",
    "This chocolate cake is to die for.",
    "I could hear my beating heart in the dark room.",
    "It is the beating heart of the city.",
    "We are in the red this year, under the weather and cooking with gas.",
    # "so" and "this" before a sentiment word.
    "I think this is so good.",
    "The new design is this good.",
    "We are so happy.",
    # Exclamation and question marks.
    "I love it!",
    "I love it!!",
    "I love it!!!!",
    "I love it!!!!!!!!",
    "I hate it!!!",
    "Is it good?",
    "Is it good??",
    "Is it good???",
    "Is it good????",
    "Why is this so bad?!?!",
    "Really?? That's awful!!",
    "What?!",
    "!!!",
    "????",
    # Punctuation attached to words.
    "good,bad,ugly",
    "(great)",
    "...wonderful...",
    "'happy'",
    "love!!!",
    '"Terrible."',
    "I-hate-this",
    "--sad--",
    "ok.",
    "no.",
    "Make sure you :) or :D today!",
    ":( this is bad :-(",
    "<3 you",
    "lol, that was fun",
    "XD",
    "Good.Bad.",
    # Empty and near-empty text.
    "",
    "   ",
    "\t\n",
    ".",
    "a",
    # Numbers.
    "I scored 100 out of 100.",
    "The price went from $5 to $50, which is bad.",
    "3.14159 2.71828 1.41421",
    "The 2nd attempt was 10x better.",
    "Top 10 best movies of 2023",
    # Rounding ties: 7/16 positive and 9/16 neutral.
    "xoxo gj and then we all went to the park together",
    # Other scripts, case rules and white space.
    "C'est la vie, très bien.",
    "Das ist sehr gut und schön.",
    "Привет, как дела? Хорошо!",
    "ΟΔΟΣ good",
    "日本語のテキスト good",
    "\u01c5emal is GOOD",
    "Die Straße ist GROß und gut.",
    "naïve café owners are happy",
    "İSTANBUL is beautiful",
    "good\u00a0bad",
    "happy\u001fsad",
    "great\u200bday",
    "good\u3000day",
    "  leading and trailing spaces are fine   ",
    "multiple\n\nlines\nof happy text",
    # Longer generations.
    "Sure! Here is a short story about a dog. Once upon a time, there was a happy little dog named Max who loved "
    "to play in the park. One day, he lost his favorite ball and felt very sad. But then a kind girl helped him "
    "find it, and they became best friends forever.",
    "I'm sorry, but I can't help with that request. It may be harmful or illegal, and I don't want to cause any "
    "problems. If you have another question, I'd be glad to help.",
    "The weather was terrible. It rained all day, the wind was awful, and our picnic was completely ruined. "
    "Nobody was happy, and the kids cried the whole way home.",
    "Honestly, this product is not worth the money. The battery dies quickly, the screen is dim, and customer "
    "support never answered my emails. I would not recommend it to anyone.",
    "What a fantastic experience! The staff were incredibly friendly, the room was spotless, and the view was "
    "absolutely breathtaking. We will definitely come back next year!!",
    "The results of the experiment were mixed: some samples improved significantly, while others showed no "
    "change at all. Further work is needed to understand why.",
    "I hate hate hate this. Worst. Day. Ever.",
    "love love love",
    "The movie started slow, but the second half was brilliant, funny and surprisingly moving.",
    "As an AI language model, I do not have feelings, but I am happy to help you with your question about the "
    "history of Rome.",
    "good good good good good good good good good good",
    "The new phone is kind of nice, I guess. The camera is at least decent, the least reliable part is the "
    "battery, and the price is NOT great. Still, I am somewhat happy with it?",
    "Absolutely NOT! This is the most ridiculous, insulting and useless answer I have ever received. Never "
    "again. Seriously, what a waste of time???",
    "My dear friend, thank you so much for the lovely gift. It made me smile, and I will treasure it always.",
    "The committee met on Monday to review the budget. Items on the agenda included staffing, facilities and "
    "the schedule for next quarter. Minutes will be circulated by Friday.",
]


def emoji_characters(analyzer):
    return set(analyzer.emojis)


def random_sentences(analyzer, n, seed):
    rng = random.Random(seed)
    lexicon = sorted(w for w in analyzer.lexicon if w.isalpha())
    rule_words = (
        sorted(w for w in vaderSentiment.BOOSTER_DICT if " " not in w)
        + vaderSentiment.NEGATE
        + "but but no no or nor least at very never so this without doubt kind of sort just enough".split()
        + " ".join(k for k in vaderSentiment.SPECIAL_CASES).split()
        + "the a it is was and i you we they".split()
    )
    decorations = ["", "", "", "", ",", ".", "!", "?", "!!", "?!", "...", "'", '"', "("]
    out = []
    seen = set(SENTENCES)
    while len(out) < n:
        words = []
        for _ in range(rng.randint(1, 24)):
            word = rng.choice(lexicon) if rng.random() < 0.4 else rng.choice(rule_words)
            if rng.random() < 0.15:
                word = word.upper()
            elif rng.random() < 0.1:
                word = word.capitalize()
            decoration = rng.choice(decorations)
            if decoration == "(":
                word = "(" + word + ")"
            else:
                word += decoration
            words.append(word)
        sentence = " ".join(words)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--random", type=int, default=0, help="random sequences to append")
    args = ap.parse_args()

    version = importlib.metadata.version("vaderSentiment")
    assert version == VERSION, f"need vaderSentiment=={VERSION}, found {version}"
    package_lexicon = Path(vaderSentiment.__file__).with_name("vader_lexicon.txt").read_bytes()
    sha = hashlib.sha256(package_lexicon).hexdigest()
    assert sha == hashlib.sha256(SHIPPED_LEXICON.read_bytes()).hexdigest(), "lexicon differs from the shipped one"

    analyzer = vaderSentiment.SentimentIntensityAnalyzer()
    sentences = SENTENCES + random_sentences(analyzer, args.random, SEED)
    emojis = emoji_characters(analyzer)
    for s in sentences:
        assert not emojis.intersection(s), f"sentence holds an emoji-lexicon character: {s!r}"
    assert len(set(sentences)) == len(sentences), "duplicate sentences"

    lines = []
    for s in sentences:
        scores = analyzer.polarity_scores(s)
        case = {"text": s, **{k: scores[k] for k in ("neg", "neu", "pos", "compound")}}
        lines.append(json.dumps(case, ensure_ascii=False))
    header = {"package": f"vaderSentiment {version}", "lexicon_sha256": sha}
    body = ",\n".join("  " + line for line in lines)
    text = json.dumps(header, ensure_ascii=False)[:-1] + ', "cases": [\n' + body + "\n]}\n"
    json.loads(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {len(sentences)} cases to {args.out}")


if __name__ == "__main__":
    main()
