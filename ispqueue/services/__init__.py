"""Logic shared by jobs and commands; handlers stay short and call in here."""
