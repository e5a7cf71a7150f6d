"""Fixed facts of the synthetic world: countries, currencies, merchant categories."""

from __future__ import annotations

# country -> (currency, region, share of users living there)
COUNTRIES: dict[str, tuple[str, str, float]] = {
    "FR": ("EUR", "eu", 0.14),
    "DE": ("EUR", "eu", 0.14),
    "ES": ("EUR", "eu", 0.08),
    "IT": ("EUR", "eu", 0.08),
    "NL": ("EUR", "eu", 0.05),
    "BE": ("EUR", "eu", 0.03),
    "PL": ("PLN", "eu", 0.04),
    "SE": ("SEK", "eu", 0.03),
    "GB": ("GBP", "eu", 0.10),
    "US": ("USD", "am", 0.15),
    "CA": ("CAD", "am", 0.04),
    "BR": ("BRL", "am", 0.04),
    "JP": ("JPY", "as", 0.04),
    "IN": ("INR", "as", 0.02),
    "SG": ("SGD", "as", 0.02),
}

# mcc -> (share of everyday purchases, typical amount relative to the user's usual, channel)
CATEGORIES: dict[str, tuple[float, float, str]] = {
    "5411": (0.26, 1.0, "pos"),  # groceries
    "5812": (0.12, 1.3, "pos"),  # restaurants
    "5814": (0.12, 0.35, "pos"),  # fast food
    "5541": (0.08, 1.2, "pos"),  # fuel
    "5912": (0.05, 0.6, "pos"),  # pharmacies
    "4121": (0.05, 0.7, "ecom"),  # taxis and ride hailing
    "5999": (0.10, 1.0, "ecom"),  # misc retail
    "5732": (0.04, 3.5, "ecom"),  # electronics
    "4511": (0.02, 6.0, "ecom"),  # airlines
    "4722": (0.02, 4.0, "ecom"),  # travel agencies
    "5944": (0.01, 4.0, "pos"),  # jewellery
    "7995": (0.01, 1.5, "ecom"),  # gambling
    "5967": (0.01, 0.8, "ecom"),  # direct marketing
    "6011": (0.07, 2.0, "atm"),  # ATM cash
    "4829": (0.04, 3.0, "transfer"),  # money transfer
}

HIGH_VALUE_CATEGORIES = ("5732", "5944", "4829", "6051")
CARD_TESTING_CATEGORIES = ("5967", "5999", "7995")
