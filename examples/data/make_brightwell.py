"""Writes the Brightwell example: a shop's help pages (brightwell/) and questions about them (brightwell_qa.jsonl).

Each question asks for one fact stated once in the pages, so a held-out question asks about a fact
no training row mentions: fine-tuning can teach the answer style but not those facts, while retrieving
the right passage can. It is the opposite case of tickets.jsonl (a format task). Deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
SYSTEM = "You answer questions from Brightwell customers in a few words."

# (page, section, sentence stating the fact, question, answer: a span of the sentence)
FACTS = [
    ("returns.md", "Return window", "You can return any Brightwell product within 45 days of delivery.",
     "How many days do I have to return a Brightwell product?", "45 days"),
    ("returns.md", "Return window", "Items bought in the winter sale can be returned until 31 January.",
     "Until when can I return something bought in the winter sale?", "31 January"),
    ("returns.md", "Return shipping", "Return labels are free for customers in Portugal and Spain.",
     "In which countries are return labels free?", "Portugal and Spain"),
    ("returns.md", "Return shipping", "Other customers pay a flat return fee of 6.90 euros.",
     "What is the return fee outside the free countries?", "6.90 euros"),
    ("returns.md", "Refunds", "Refunds reach your original payment method within 7 working days.",
     "How long does a refund take to reach me?", "7 working days"),
    ("returns.md", "Refunds", "Gift cards are refunded as store credit, never as cash.",
     "How is a gift card purchase refunded?", "store credit"),
    ("returns.md", "Exceptions", "Opened bulbs cannot be returned for hygiene and safety reasons.",
     "Which items cannot be returned once opened?", "bulbs"),
    ("returns.md", "Exceptions", "Engraved lamps are final sale.",
     "Can I return an engraved lamp?", "final sale"),
    ("shipping.html", "Delivery times", "Orders placed before 14:00 leave our warehouse in Braga the same day.",
     "Before what time must I order for same-day dispatch?", "14:00"),
    ("shipping.html", "Delivery times", "Our warehouse is in Braga.",
     "In which city is the Brightwell warehouse?", "Braga"),
    ("shipping.html", "Delivery times", "Standard delivery to mainland Europe takes 3 to 5 working days.",
     "How long does standard delivery to mainland Europe take?", "3 to 5 working days"),
    ("shipping.html", "Delivery times", "Express delivery arrives the next working day and costs 12 euros.",
     "What does express delivery cost?", "12 euros"),
    ("shipping.html", "Costs", "Shipping is free on orders over 80 euros.",
     "Above what order value is shipping free?", "80 euros"),
    ("shipping.html", "Costs", "We ship parcels with DPD.",
     "Which carrier delivers Brightwell parcels?", "DPD"),
    ("shipping.html", "Costs", "We do not ship to the Canary Islands.",
     "Which islands does Brightwell not ship to?", "the Canary Islands"),
    ("shipping.html", "Tracking", "Tracking links are sent by text message, not by email.",
     "How are tracking links sent?", "by text message"),
    ("shipping.html", "Tracking", "A parcel that cannot be delivered waits 10 days at the local pickup point.",
     "How long does an undelivered parcel wait at the pickup point?", "10 days"),
    ("warranty.txt", "Coverage", "Every Lumio lamp has a 3-year warranty.",
     "How long is the warranty on a Lumio lamp?", "3-year"),
    ("warranty.txt", "Coverage", "Aerra fans have a 2-year warranty on the motor.",
     "What does the Aerra fan warranty cover?", "the motor"),
    ("warranty.txt", "Coverage", "Batteries are covered for 12 months.",
     "For how long are batteries covered?", "12 months"),
    ("warranty.txt", "Coverage", "The warranty does not cover damage from water.",
     "What kind of damage is not covered by the warranty?", "damage from water"),
    ("warranty.txt", "Claims", "To claim, send a photo of the serial number to care@brightwell.example.",
     "Where do I send a warranty claim?", "care@brightwell.example"),
    ("warranty.txt", "Claims", "The serial number is printed under the base of the lamp.",
     "Where is the serial number on a lamp?", "under the base"),
    ("warranty.txt", "Claims", "A repaired product comes back with a new 6-month warranty on the repair.",
     "What warranty does a repair get?", "6-month"),
    ("lumio.md", "Lumio Desk", "The Lumio Desk lamp gives 800 lumens at full brightness.",
     "How bright is the Lumio Desk at full power?", "800 lumens"),
    ("lumio.md", "Lumio Desk", "The Lumio Desk arm is made of recycled aluminium.",
     "What is the Lumio Desk arm made of?", "recycled aluminium"),
    ("lumio.md", "Lumio Desk", "The Lumio Desk has five colour temperatures, from 2700 K to 6500 K.",
     "How many colour temperatures does the Lumio Desk have?", "five"),
    ("lumio.md", "Lumio Desk", "Its USB-C port charges a phone at 18 watts.",
     "At what power does the Lumio Desk charge a phone?", "18 watts"),
    ("lumio.md", "Lumio Floor", "The Lumio Floor stands 165 centimetres tall.",
     "How tall is the Lumio Floor?", "165 centimetres"),
    ("lumio.md", "Lumio Floor", "The Lumio Floor comes in sand, slate and forest green.",
     "Which colours does the Lumio Floor come in?", "sand, slate and forest green"),
    ("lumio.md", "Lumio Floor", "The Lumio Floor turns off by itself after 4 hours without movement.",
     "After how long without movement does the Lumio Floor switch off?", "4 hours"),
    ("lumio.md", "Lumio Clip", "The Lumio Clip runs for 9 hours on one charge.",
     "How long does the Lumio Clip run on one charge?", "9 hours"),
    ("lumio.md", "Lumio Clip", "The Lumio Clip weighs 210 grams.",
     "How much does the Lumio Clip weigh?", "210 grams"),
    ("aerra.md", "Aerra Tower", "The Aerra Tower fan has 12 speed settings.",
     "How many speed settings does the Aerra Tower have?", "12"),
    ("aerra.md", "Aerra Tower", "At its lowest speed the Aerra Tower makes 24 decibels of noise.",
     "How loud is the Aerra Tower at its lowest speed?", "24 decibels"),
    ("aerra.md", "Aerra Tower", "The Aerra Tower oscillates through 90 degrees.",
     "Through how many degrees does the Aerra Tower oscillate?", "90 degrees"),
    ("aerra.md", "Aerra Tower", "Its dust filter should be rinsed every 2 weeks.",
     "How often should the Aerra Tower dust filter be rinsed?", "every 2 weeks"),
    ("aerra.md", "Aerra Mini", "The Aerra Mini is powered by a USB-A cable.",
     "What cable powers the Aerra Mini?", "USB-A"),
    ("aerra.md", "Aerra Mini", "The Aerra Mini folds flat to 4 centimetres.",
     "How flat does the Aerra Mini fold?", "4 centimetres"),
    ("aerra.md", "Aerra Mini", "The Aerra Mini costs 39 euros.",
     "How much is the Aerra Mini?", "39 euros"),
    ("account.md", "Orders", "You can change the delivery address until the order is packed.",
     "Until when can I change my delivery address?", "until the order is packed"),
    ("account.md", "Orders", "An order can be cancelled within 2 hours of payment.",
     "Within how long can I cancel an order?", "2 hours"),
    ("account.md", "Payment", "We accept Visa, Mastercard, MB Way and PayPal.",
     "Which payment methods are accepted?", "Visa, Mastercard, MB Way and PayPal"),
    ("account.md", "Payment", "Invoices are emailed as PDF files on the day of dispatch.",
     "When are invoices emailed?", "on the day of dispatch"),
    ("account.md", "Payment", "Business customers can pay by bank transfer within 30 days.",
     "How long do business customers have to pay by bank transfer?", "30 days"),
    ("account.md", "Loyalty", "Every euro spent earns 2 Glow points.",
     "How many Glow points does a euro earn?", "2 Glow points"),
    ("account.md", "Loyalty", "500 Glow points are worth a 5 euro voucher.",
     "How many Glow points make a 5 euro voucher?", "500"),
    ("account.md", "Loyalty", "Glow points expire after 18 months.",
     "When do Glow points expire?", "after 18 months"),
    ("support.md", "Contact", "Phone support is open Monday to Friday, 9:00 to 18:00 Lisbon time.",
     "On which days is phone support open?", "Monday to Friday"),
    ("support.md", "Contact", "The support phone number is +351 210 555 019.",
     "What is the support phone number?", "+351 210 555 019"),
    ("support.md", "Contact", "Live chat answers within 5 minutes on average.",
     "How quickly does live chat answer on average?", "5 minutes"),
    ("support.md", "Contact", "Our support team speaks Portuguese, Spanish and English.",
     "Which languages does the support team speak?", "Portuguese, Spanish and English"),
    ("support.md", "Repairs", "Repairs take about 10 working days from when we receive the product.",
     "How long does a repair take?", "10 working days"),
    ("support.md", "Repairs", "Spare parts are sold for 7 years after a model is discontinued.",
     "For how long are spare parts sold after a model is discontinued?", "7 years"),
    ("support.md", "Repairs", "Replacement lamp heads cost 24 euros.",
     "How much is a replacement lamp head?", "24 euros"),
    ("company.md", "About us", "Brightwell was founded in 2016 in Porto.",
     "In what year was Brightwell founded?", "2016"),
    ("company.md", "About us", "Brightwell's founder is Marta Quintela.",
     "Who founded Brightwell?", "Marta Quintela"),
    ("company.md", "About us", "All Brightwell lamps are assembled in Guimarães.",
     "Where are Brightwell lamps assembled?", "Guimarães"),
    ("company.md", "Sustainability", "Brightwell packaging is 100% cardboard, with no plastic.",
     "What is Brightwell packaging made of?", "cardboard"),
    ("company.md", "Sustainability", "Old lamps can be dropped at any of our 14 recycling partners.",
     "How many recycling partners does Brightwell have?", "14"),
    ("company.md", "Sustainability", "Brightwell plants one tree for every order over 50 euros.",
     "What does Brightwell do for every order over 50 euros?", "plants one tree"),
]

FILLER = {  # sentences with no fact asked about, so a page reads like a page and retrieval has distractors
    "returns.md": "We want you to love your light. If you do not, send it back.",
    "shipping.html": "We pack every order by hand and check it before it leaves.",
    "warranty.txt": "We build our products to last and stand behind them.",
    "lumio.md": "Lumio lamps are designed in Porto for reading, working and relaxing.",
    "aerra.md": "Aerra fans move air quietly through hot summers.",
    "account.md": "Your account keeps your orders, invoices and points in one place.",
    "support.md": "Our team is happy to help before and after you buy.",
    "company.md": "We are a small team that cares about good light and fewer things thrown away.",
}
TITLES = {"returns.md": "Returns and refunds", "shipping.html": "Shipping", "warranty.txt": "Warranty",
          "lumio.md": "Lumio lamps", "aerra.md": "Aerra fans", "account.md": "Your account and payment",
          "support.md": "Support and repairs", "company.md": "About Brightwell"}


def sections(page: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for p, section, sentence, _, _ in FACTS:
        if p == page:
            found.setdefault(section, []).append(sentence)
    return found


def render(page: str) -> str:
    title, parts = TITLES[page], sections(page)
    if page.endswith(".html"):
        body = "".join(f"<h2>{s}</h2>\n<p>{' '.join(lines)}</p>\n" for s, lines in parts.items())
        return (f"<!doctype html>\n<html><head><title>{title}</title><style>body {{ font: 16px serif }}</style>"
                f"</head>\n<body><nav>Home | Shop | Help</nav>\n<h1>{title}</h1>\n<p>{FILLER[page]}</p>\n{body}"
                "<footer>Brightwell Lda, Porto</footer></body></html>\n")
    if page.endswith(".txt"):
        body = "".join(f"{s.upper()}\n\n{' '.join(lines)}\n\n" for s, lines in parts.items())
        return f"{title.upper()}\n\n{FILLER[page]}\n\n{body}"
    body = "".join(f"## {s}\n\n{' '.join(lines)}\n\n" for s, lines in parts.items())
    return f"# {title}\n\n{FILLER[page]}\n\n{body}"


def main() -> None:
    docs = HERE / "brightwell"
    docs.mkdir(exist_ok=True)
    for page in TITLES:
        (docs / page).write_text(render(page), encoding="utf-8")
    rows = [{"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
                          {"role": "assistant", "content": answer}]}
            for _, _, sentence, question, answer in FACTS if answer in sentence or _fail(sentence, answer)]
    random.Random(0).shuffle(rows)
    with open(HERE / "brightwell_qa.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _fail(sentence: str, answer: str) -> bool:
    raise SystemExit(f"answer {answer!r} is not in {sentence!r}")


if __name__ == "__main__":
    main()
