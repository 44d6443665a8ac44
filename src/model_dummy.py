"""Writes a small LightGBM model trained on the real flights: `python src/model_dummy.py --out PATH`."""

from flight_delay.training.dummy import main

if __name__ == "__main__":
    main()
