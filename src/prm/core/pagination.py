"""Cursor-free, offset pagination shared by every list endpoint: `Page[XRead]`."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

MAX_LIMIT = 200
MAX_OFFSET = 2**31 - 1  # far past any real list; larger values overflow PostgreSQL's OFFSET


class PageParams(BaseModel):
    limit: int = 50
    offset: int = 0


def _page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


Paging = Annotated[PageParams, Depends(_page_params)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


def matching(stmt: Select[Any], model: Any, **values: Any) -> Select[Any]:
    """`stmt` narrowed to the rows whose column equals each value given (None or "": no filter)."""
    for column, value in values.items():
        if value is not None and value != "":
            stmt = stmt.where(getattr(model, column) == value)
    return stmt


async def paginate(session: AsyncSession, stmt: Select[Any], params: PageParams) -> tuple[list[Any], int]:
    """Run `stmt` for one page and count all its rows. Returns (rows, total)."""
    total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = (await session.execute(stmt.limit(params.limit).offset(params.offset))).scalars().all()
    return list(rows), int(total or 0)
