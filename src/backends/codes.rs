//! One-time codes kept in the store (see [`StoreCodes`]).
