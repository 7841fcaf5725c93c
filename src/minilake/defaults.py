"""The sample world committed in landing_zone/, samples/ and final_results/ (README.md, the sample
world): its
parameters, here so that the command line's defaults do not load the generator."""

import datetime as dt

SAMPLE = {"start": dt.date(2024, 10, 9), "days": 7, "customers": 5000, "seed": 20241009}
