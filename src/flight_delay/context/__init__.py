"""What is happening now: posted flights and weather, and the context features read from them.

`definitions` says what each context feature is and when each fact becomes known (serving computes
with it; the Spark pipeline implements the same definitions with the same constants), `index` holds
records in memory and answers a flight's features at a prediction time, `tables` stores what is
posted, `ingestion` takes posts, `state` keeps each worker's view of it fresh.
"""
