"""A small sentiment task generated from templates: nothing is downloaded.

Each sentence says something about a product or place with one opinion word, sometimes negated
("the hotel was not lovely."): the label is whether the sentence is positive. The opinion words
are split in two halves:

- the *labeled* training sentences use only the first half;
- the test sentences use only the second half, words the labeled data never shows (a second
  test set, with the first half's words, checks the labeled task itself);
- validation sentences (to pick the best epoch) are half of each;
- the *unlabeled* transfer set uses all of them (label -100).

A model trained from scratch on the labeled sentences has never seen a test opinion word. A
pretrained teacher knows what "superb" or "dreadful" mean; distillation passes that on through
the unlabeled sentences, whose labels nobody wrote down.
"""

import random

POSITIVE = ["good", "great", "excellent", "wonderful", "fantastic", "lovely", "amazing",
            "brilliant", "pleasant", "perfect", "superb", "outstanding", "delightful",
            "terrific", "marvelous", "splendid", "impressive", "enjoyable", "fabulous",
            "awesome"]
NEGATIVE = ["bad", "terrible", "awful", "horrible", "poor", "disappointing", "boring",
            "useless", "annoying", "mediocre", "dreadful", "lousy", "miserable", "pathetic",
            "unpleasant", "atrocious", "abysmal", "dismal", "appalling", "disgusting"]
SUBJECTS = ["the movie", "the phone", "this restaurant", "the service", "the book",
            "the hotel", "the food", "the camera", "this laptop", "the concert", "the staff",
            "the game", "our trip", "the coffee", "the app", "the room", "the show",
            "the museum", "the headphones", "the class"]
TEMPLATES = ["{s} was {n}{w}.", "i thought {s} was {n}{w}.", "honestly, {s} is {n}{w}.",
             "{s} turned out to be {n}{w}.", "in my opinion {s} was {n}{w}.",
             "my friends said {s} is {n}{w}.", "overall {s} felt {n}{w}.",
             "to be fair, {s} seemed {n}{w}."]
NEGATION = "not "

HALF = len(POSITIVE) // 2
SEEN = (POSITIVE[:HALF], NEGATIVE[:HALF])      # the labeled training sentences
UNSEEN = (POSITIVE[HALF:], NEGATIVE[HALF:])    # validation and test sentences
EVERY = (POSITIVE, NEGATIVE)                   # the unlabeled transfer set


def sentences(n, words, seed, negation_rate=0.25, exclude=()):
    """``n`` (text, label) pairs; label 1 = positive, a negation flips it.

    Texts in ``exclude`` are drawn again, so a split can be kept disjoint from others.
    """
    rng = random.Random(seed)
    positive, negative = words
    exclude = set(exclude)
    pairs = []
    while len(pairs) < n:
        label = rng.randrange(2)
        word = rng.choice(positive if label else negative)
        negated = rng.random() < negation_rate
        text = rng.choice(TEMPLATES).format(s=rng.choice(SUBJECTS), w=word,
                                            n=NEGATION if negated else "")
        if text not in exclude:
            pairs.append((text, label ^ int(negated)))
    return pairs


def splits(labeled=400, transfer=3000, validation=300, test=1000, seed=0):
    """The task's splits as lists of (text, label); transfer labels are -100 (unlabeled).

    No validation or test sentence occurs in the training splits (labeled or transfer): the
    student meets the unseen opinion words in the transfer set, never the test sentences.
    """
    held_out = {
        "validation": sentences(validation // 2, UNSEEN, seed + 2)
        + sentences(validation - validation // 2, SEEN, seed + 5),
        "test": sentences(test, UNSEEN, seed + 3),
        "test_seen_words": sentences(test, SEEN, seed + 4),
    }
    evaluated = {text for pairs in held_out.values() for text, _ in pairs}
    return {
        "labeled": sentences(labeled, SEEN, seed, exclude=evaluated),
        "transfer": [(text, -100) for text, _ in
                     sentences(transfer, EVERY, seed + 1, exclude=evaluated)],
        **held_out,
    }
