"""``tinyfarm farm labgrid-setup``: the farm file's places, matches and tags, made on the coordinator.

A lab is described once, in the farm file: every ``backend: labgrid`` device with a named place
gets that place on the coordinator (created when missing), its resource matches (added when
missing; existing ones are kept) and its tags (set; other tags are kept). Running it again changes
nothing. Devices that only select places by tags have nothing to create.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from device_harness.farm.inventory import Farm, load_farm

from .coordinator import coordinator


@dataclass
class SetupReport:
    created: list[str] = field(default_factory=list)
    matches: list[str] = field(default_factory=list)     # "place: pattern"
    tags: list[str] = field(default_factory=list)        # "place: k=v"
    unchanged: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"created place {p}" for p in self.created]
                + [f"added match {m}" for m in self.matches]
                + [f"set tag {t}" for t in self.tags]
                + [f"unchanged {p}" for p in self.unchanged])


def setup_places(farm: Farm, dry_run: bool = False) -> SetupReport:
    """Make the coordinator's places match the farm file (see the module docstring)."""
    session = coordinator(farm.labgrid_address)
    places, _ = session.snapshot()
    report = SetupReport()
    for device in farm.devices:
        spec = device.place
        if spec is None or not spec.name:
            continue
        name = spec.name
        existing = places.get(name)
        changed = False
        if existing is None:
            report.created.append(name)
            changed = True
            if not dry_run:
                session.add_place(name)
        have = {m.strip() for m in existing.matches} if existing else set()
        for pattern in spec.match:
            if pattern not in have:
                report.matches.append(f"{name}: {pattern}")
                changed = True
                if not dry_run:
                    session.add_match(name, pattern)
        old_tags = existing.tags if existing else {}
        new_tags = {k: v for k, v in spec.tags.items() if old_tags.get(k) != v}
        if new_tags:
            report.tags += [f"{name}: {k}={v}" for k, v in sorted(new_tags.items())]
            changed = True
            if not dry_run:
                session.set_tags(name, new_tags)
        if not changed:
            report.unchanged.append(name)
    return report


@click.command(name="labgrid-setup")
@click.option("--farm", "farm_path", envvar="TINYFARM_FARM", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path), help="Farm file; also $TINYFARM_FARM.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
def labgrid_setup(farm_path: Path, dry_run: bool) -> None:
    """Create the farm file's labgrid places, matches and tags on the coordinator.

    \b
    tinyfarm farm labgrid-setup --farm lab.yaml            # coordinator: labgrid.coordinator,
                                                          # else $LG_COORDINATOR
    """
    farm = load_farm(farm_path)
    report = setup_places(farm, dry_run=dry_run)
    prefix = "would: " if dry_run else ""
    for line in report.lines():
        click.echo(prefix + line if not line.startswith("unchanged") else line)
    if not report.lines():
        click.echo(f"{farm.path} names no labgrid place (devices with backend: labgrid and "
                   "place.name)")
