"""The process context: the settings given to `create_app` (or the worker, or the CLI) and the
adapters built from them once, at startup. It is the only way code below `app.py`, `cli.py` and
`worker.py` reaches settings or adapters (nothing calls `get_settings()` there).

How code receives it:

* routers: the `AppContext` dependency (`ctx: AppContext`), i.e. `request.app.state.context`;
* services, jobs and event handlers: from the session they already take first,
  `context.of(session)`. Every session carries it: `bind(sessionmaker, ctx)` is called by
  `create_app`, the worker and the CLI on the sessionmaker that requests, jobs and subscribers use,
  and tests attach theirs (`attach(session, ctx)`).

Per-organisation settings (phone region, reminder offsets) are stored on the organisation and read
with `identity.service.organisation_settings(session, org_id)`, which falls back to these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from prm.adapters.registry import Adapters
from prm.settings import Settings

KEY = "prm.context"


@dataclass(frozen=True)
class Context:
    settings: Settings
    adapters: Adapters

    @classmethod
    def build(cls, settings: Settings) -> Context:
        return cls(settings=settings, adapters=Adapters(settings))


def bind(sessionmaker: async_sessionmaker[AsyncSession], ctx: Context) -> None:
    """Every session `sessionmaker` makes from now on carries `ctx`."""
    sessionmaker.configure(info={KEY: ctx})


def attach(session: AsyncSession, ctx: Context) -> AsyncSession:
    """Give one session `ctx` (tests; sessions made by a bound sessionmaker already have it)."""
    session.info[KEY] = ctx
    return session


def of(session: AsyncSession | Any) -> Context:
    """The context of the unit of work `session` belongs to."""
    ctx = session.info.get(KEY)
    if not isinstance(ctx, Context):
        raise RuntimeError("this session carries no prm.context.Context (bind the sessionmaker or attach it)")
    return ctx


def get_context(request: Request) -> Context:
    ctx = request.app.state.context
    assert isinstance(ctx, Context)
    return ctx


AppContext = Annotated[Context, Depends(get_context)]
