"""Kairos's pure core: every decision as a plain function of state and input.

Nothing in this package imports Faust, Kafka or the network; the live agents and the offline replay
call the same functions, so the same input gives the same state and the same triggers.
"""
