"""clm-trainer: data -> features -> model -> walk-forward backtest -> metrics -> artifact."""
