import click


@click.group()
def main() -> None:
    """ispqueue: the job daemon for small ISPs."""
