"""Secret Vaults (D15): registered Azure Key Vaults that `vault://VAULT/SECRET[/VERSION]`
references are read from, on demand, through a short cache; never persisted."""
