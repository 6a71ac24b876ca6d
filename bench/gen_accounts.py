#!/usr/bin/env python3
"""Deterministic account CSVs for bench/lookup.sh.

  gen_accounts.py accounts OUT.csv N     N accounts (header phone,name,brand,email,plan)
  gen_accounts.py numbers OUT.csv N FOUND_PERCENT ACCOUNTS SEED
                                         sipp -inf file: N caller numbers (field0; field1
                                         says found / absent / other_brand), FOUND_PERCENT %
                                         of them numbers of no-brand accounts among the
                                         first ACCOUNTS, the rest not in the database

Numbers: +1 650 XXX YYYY, valid US numbers per libphonenumber (area code 650,
exchange 201..999). The accounts use exchanges 201..(200 + ceil(N/10000)), in a
shuffled order (an import from a CRM is not sorted by number); every tenth
account is in brand `acme`, the rest in no brand. Numbers that are not found use
exchanges 901..999 (never in the file for N <= 7,000,000) — or, one time in
five, an `acme` account's number (same number, other brand: also not found).
"""
import random
import sys

BRAND_EVERY = 10  # account i is in brand `acme` when i % 10 == 9


def number(i):
    return f"+1650{201 + i // 10000}{i % 10000:04d}"


def accounts(out, n):
    order = list(range(n))
    random.Random(20261206).shuffle(order)
    plans = ("basic", "plus", "gold")
    with open(out, "w") as f:
        f.write("phone,name,brand,email,plan\n")
        w = f.write
        for i in order:
            brand = "acme" if i % BRAND_EVERY == BRAND_EVERY - 1 else ""
            w(f"{number(i)},Customer {i:07d},{brand},c{i}@example.com,{plans[i % 3]}\n")


def numbers(out, n, found_pct, accounts_n, seed):
    rng = random.Random(seed)
    with open(out, "w") as f:
        f.write("SEQUENTIAL\n")  # sipp -inf: one line per call, in this (shuffled) order
        for _ in range(n):
            if rng.random() * 100 < found_pct:
                while True:
                    i = rng.randrange(accounts_n)
                    if i % BRAND_EVERY != BRAND_EVERY - 1:
                        break
                f.write(f"{number(i)};found\n")
            elif rng.random() < 0.2 and accounts_n >= BRAND_EVERY:
                i = rng.randrange(accounts_n // BRAND_EVERY) * BRAND_EVERY + BRAND_EVERY - 1
                f.write(f"{number(i)};other_brand\n")
            else:
                f.write(f"+1650{rng.randrange(901, 1000)}{rng.randrange(10000):04d};absent\n")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "accounts":
        accounts(sys.argv[2], int(sys.argv[3]))
    elif cmd == "numbers":
        numbers(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(__doc__)
