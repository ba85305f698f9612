"""mplab's command line: thin Typer apps that parse, call one library function and render."""
