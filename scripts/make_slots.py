#!/usr/bin/env python3
"""Writes examples/slots/{train,validation}.jsonl: customer-support messages tagged word by word
with IOB2 entity tags (ORDER, PRODUCT, DATE, CITY, PERSON), written for tunesmith's token
classification examples and tests. Hand-written templates are filled from small lists, seeded.
Validation rows use templates and slot values partly held out from training, so a tagger must
generalise rather than memorise.

  python3 scripts/make_slots.py examples/slots
"""
import json, os, random, sys

TEMPLATES = [
    "my order {ORDER} for the {PRODUCT} has not arrived in {CITY} yet",
    "I ordered a {PRODUCT} on {DATE} and it arrived broken",
    "please ship order {ORDER} to {CITY} instead",
    "hi , this is {PERSON} , can you cancel the {PRODUCT} I bought on {DATE} ?",
    "where is {ORDER} ? it was supposed to reach {CITY} by {DATE}",
    "the {PRODUCT} from order {ORDER} stopped working",
    "{PERSON} here , I want to return my {PRODUCT}",
    "can I change the delivery address of {ORDER} to {CITY} ?",
    "I was charged twice for {ORDER} on {DATE}",
    "my name is {PERSON} and I never received the {PRODUCT}",
    "do you deliver to {CITY} before {DATE} ?",
    "the tracking for order {ORDER} has been stuck in {CITY} since {DATE}",
    "I would like a refund for the {PRODUCT} , order {ORDER}",
    "is the {PRODUCT} back in stock ?",
    "{PERSON} from {CITY} asking about order {ORDER}",
    "please call me back , {PERSON} , about the {PRODUCT}",
    "my {PRODUCT} was delivered to the wrong house in {CITY}",
    "can you confirm that {ORDER} ships on {DATE} ?",
]
HELD_OUT_TEMPLATES = [
    "hello , {PERSON} again , the {PRODUCT} in order {ORDER} is missing a part",
    "will order {ORDER} make it to {CITY} by {DATE} ?",
    "I returned the {PRODUCT} on {DATE} but got no refund",
    "could {PERSON} pick up the {PRODUCT} in {CITY} ?",
]
VALUES = {
    "PRODUCT": ["wireless headphones", "coffee maker", "running shoes", "phone case", "standing desk",
                "smart watch", "blender", "laptop stand", "winter jacket", "desk lamp", "yoga mat",
                "bluetooth speaker", "kettle", "backpack", "electric toothbrush", "gaming mouse"],
    "CITY": ["Berlin", "New York", "Lyon", "Madrid", "Toronto", "Osaka", "Cape Town", "Dublin",
             "São Paulo", "Melbourne", "Oslo", "Chicago", "Lisbon", "Nairobi"],
    "PERSON": ["Maria", "John Smith", "Aiko Tanaka", "Pierre", "Fatima Khan", "Lars", "Chen Wei",
               "Olivia Brown", "Diego", "Anna Kowalska", "Samuel", "Priya Patel"],
    "DATE": ["March 3", "last Tuesday", "yesterday", "June 14", "Friday", "May 2nd", "the 21st",
             "last week", "December 9", "Monday morning", "April 30", "two days ago"],
}


def order(rng):
    return rng.choice(["#", "A-", "", "ORD-"]) + str(rng.randint(10000, 99999))


def fill(template, rng, values):
    words, tags = [], []
    for part in template.split(" "):
        if part.startswith("{") and part.endswith("}"):
            kind = part[1:-1]
            text = order(rng) if kind == "ORDER" else rng.choice(values[kind])
            for i, w in enumerate(text.split(" ")):
                words.append(w)
                tags.append(("B-" if i == 0 else "I-") + kind)
        else:
            words.append(part)
            tags.append("O")
    return {"tokens": words, "tags": tags}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "examples/slots"
    rng = random.Random(11)
    # Each list keeps its last quarter for validation only.
    train_values = {k: v[: len(v) * 3 // 4] for k, v in VALUES.items()}
    train = [fill(rng.choice(TEMPLATES), rng, train_values) for _ in range(480)]
    validation = [fill(rng.choice(TEMPLATES + HELD_OUT_TEMPLATES), rng, VALUES) for _ in range(120)]
    os.makedirs(out, exist_ok=True)
    for name, rows in [("train", train), ("validation", validation)]:
        with open(os.path.join(out, name + ".jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
