"""spark-submit's entry: `spark-submit [options] src/spark_job.py COMMAND ...` is `flight-delay COMMAND`.

It lives outside the package because Python puts the script's folder first on sys.path: from
src/flight_delay/ its modules (config.py, errors.py, ...) would shadow top-level ones.
"""

from flight_delay.cli import main

if __name__ == "__main__":
    main(prog_name="flight-delay")
