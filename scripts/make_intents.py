#!/usr/bin/env python3
"""Writes examples/intents/{train,validation}.jsonl: customer-support messages in six intents,
written for tunesmith's quickstart. Each intent has hand-written phrasings with slots (order
numbers, products, plans, devices) filled from small lists, seeded, then split 80/20 per intent.

  python3 scripts/make_intents.py examples/intents
"""
import json, os, random, sys

INTENTS = {
    "billing": [
        "I was charged twice for order {order}, can you refund one of them?",
        "Why is there a {amount} charge on my card from you?",
        "my invoice for {month} looks wrong, the total is higher than my plan",
        "Can I get a copy of the receipt for my {plan} subscription?",
        "I need to update the credit card you bill every month",
        "the payment failed but the money left my account??",
        "How do I change my billing address before the next invoice?",
        "You billed me {amount} after I downgraded to {plan}. Please fix.",
        "Is VAT included in the price shown at checkout?",
        "can i pay by bank transfer instead of card",
        "My coupon {code} was not applied and I paid full price",
        "Where can I download invoices for my company's accounting?",
        "I see a pending authorization of {amount}, when will it drop off?",
        "please explain the extra fee on this month's bill",
        "Do you offer invoices with our tax ID on them?",
        "the annual {plan} plan renewed without warning and charged {amount}",
    ],
    "shipping": [
        "Where is my package? Order {order} still says processing",
        "tracking for {order} hasn't updated in {days} days",
        "Can you ship to {country}?",
        "How long does standard delivery take to {country}?",
        "The courier says delivered but I never got order {order}",
        "can I change the delivery address for {order}, it hasn't shipped yet",
        "My {product} arrived with the box crushed, is it still covered?",
        "Do you offer express shipping for the {product}?",
        "order {order} was split into two parcels and only one came",
        "what does 'label created' mean on my tracking page",
        "I need the {product} before Friday, can it be expedited?",
        "Is shipping free over a certain amount?",
        "The delivery driver left my parcel with a neighbor I don't know",
        "why is shipping to {country} so expensive",
        "My order {order} is stuck in customs, what do I do?",
        "Can I pick up my order at a store instead of delivery?",
    ],
    "returns": [
        "I want to return the {product} I bought last week",
        "How do I send back order {order}? It doesn't fit",
        "The {product} stopped working after {days} days, can I exchange it?",
        "what's your return policy for opened items",
        "I received the wrong color {product} and want a swap",
        "Is the return label free or do I pay for it?",
        "I returned order {order} {days} days ago, when will I get my refund?",
        "can I return a gift without the receipt",
        "The {product} is not as described, I want my money back",
        "How long do I have to return the {product}?",
        "do you accept returns for items bought on sale?",
        "I'd like to exchange the {product} for a bigger size",
        "my refund for {order} came back less than what I paid",
        "Can I drop off a return at one of your stores?",
        "Start a return for {order} please, both items",
        "the replacement {product} has the same defect as the first one",
    ],
    "account": [
        "I can't log in, it says my password is wrong",
        "How do I change the email on my account?",
        "please delete my account and all my data",
        "I never got the verification email after signing up",
        "Someone else might be using my account, I see logins from {country}",
        "how do i turn on two-factor authentication",
        "The password reset link says it expired",
        "Can I merge two accounts into one?",
        "I want to change my username",
        "my account got locked after too many attempts",
        "How do I add a teammate to our {plan} workspace?",
        "Where do I update my phone number for login codes?",
        "I lost access to my authenticator app, how do I sign in?",
        "can you tell me which email my account is registered with",
        "how do I download a copy of my personal data",
        "I'd like to transfer ownership of the account to a colleague",
    ],
    "technical_support": [
        "The app crashes every time I open it on my {device}",
        "Your website won't load the checkout page, just spins",
        "The {product} won't connect to wifi anymore",
        "I get error {code} when I try to sync",
        "after the last update the {product} battery drains in hours",
        "how do I reset the {product} to factory settings",
        "the app keeps logging me out on my {device}",
        "Bluetooth pairing with my {device} fails every time",
        "The screen on the {product} flickers when it's charging",
        "Uploads stop at 99% and then fail with error {code}",
        "notifications don't show up on my {device}",
        "is the {product} compatible with {device}?",
        "the firmware update bricked my {product}, it won't turn on",
        "why is the app so slow since yesterday",
        "Export to PDF produces a blank file",
        "I can't hear anything from the {product} speakers",
    ],
    "cancellation": [
        "I want to cancel my {plan} subscription",
        "Please cancel order {order} before it ships",
        "How do I stop the automatic renewal?",
        "cancel my membership effective immediately",
        "I signed up for the free trial, how do I cancel so I'm not charged",
        "Can I pause my {plan} plan instead of cancelling?",
        "I'd like to cancel and get a prorated refund for the rest of the year",
        "where is the cancel button in settings?? I can't find it",
        "Cancel the second item in order {order} but keep the first",
        "I'm moving abroad and need to end my contract",
        "please don't renew my {plan} plan next month",
        "If I cancel now do I keep access until the end of the period?",
        "stop sending me the monthly box, I want to unsubscribe",
        "I ordered by mistake, cancel {order} please",
        "how much notice do I need to give to cancel",
        "Cancel everything, I'm done with this service",
    ],
}

SLOTS = {
    "order": lambda r: f"#{r.randint(100000, 999999)}",
    "amount": lambda r: r.choice(["$12.99", "$49", "€30", "£7.50", "$129.00", "$5"]),
    "month": lambda r: r.choice(["March", "April", "last month", "October", "January"]),
    "plan": lambda r: r.choice(["Pro", "Basic", "Family", "Team", "Premium"]),
    "code": lambda r: r.choice(["E1043", "SAVE20", "ERR_502", "X-17", "WELCOME10", "0x80070005"]),
    "days": lambda r: str(r.randint(2, 21)),
    "country": lambda r: r.choice(["Canada", "Germany", "Brazil", "Japan", "Australia", "India", "Mexico"]),
    "product": lambda r: r.choice(["headphones", "smart watch", "blender", "backpack", "laptop stand",
                                   "phone case", "coffee grinder", "desk lamp", "running shoes"]),
    "device": lambda r: r.choice(["iPhone", "Android phone", "iPad", "Windows laptop", "Mac", "Pixel 8"]),
}


OPENERS = ["", "", "", "Hi, ", "Hello, ", "hey ", "Hi there. ", "Good morning, ", "Quick question: ", "Urgent: "]
CLOSERS = ["", "", "", " Thanks.", " thanks!", " Thank you in advance.", " Please help.", " asap", " Cheers"]


def fill(template, rng):
    out = template
    for k, f in SLOTS.items():
        while "{" + k + "}" in out:
            out = out.replace("{" + k + "}", f(rng), 1)
    opener = rng.choice(OPENERS)
    if opener and out[0].isupper() and not opener.endswith(". ") and not opener.endswith(": "):
        out = out[0].lower() + out[1:]
    return opener + out + rng.choice(CLOSERS)


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(7)
    train, val = [], []
    for intent, templates in INTENTS.items():
        rows = set()
        for _ in range(100000):
            if len(rows) == 100:
                break
            rows.add(fill(rng.choice(templates), rng))
        assert len(rows) == 100, f"{intent}: only {len(rows)} distinct messages"
        rows = sorted(rows)
        rng.shuffle(rows)
        train += [{"text": t, "label": intent} for t in rows[:80]]
        val += [{"text": t, "label": intent} for t in rows[80:]]
    rng.shuffle(train)
    rng.shuffle(val)
    for name, rows in [("train", train), ("validation", val)]:
        with open(os.path.join(out_dir, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(len(train), "train,", len(val), "validation")


if __name__ == "__main__":
    main()
