"""Typed handlers: the :class:`Registry` and its ``@registry.handler(name)`` decorator.

::

    registry = longshore.Registry()

    @registry.handler("send_email")
    async def send_email(payload: SendEmail, ctx: longshore.Context) -> None: ...

The payload type comes from the first parameter's annotation: a pydantic model, a
dataclass, or any type pydantic validates (``dict`` or no annotation: the stored payload as
is). A payload that does not validate fails the task permanently
(:class:`~longshore.errors.InvalidPayload`, the validation errors in the dead-letter
entry). The context parameter is optional. ``def`` handlers run in a worker thread.
Hooks (:mod:`longshore.hooks`) and plugins are registered on the same registry.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, get_type_hints

from pydantic import TypeAdapter, ValidationError

from longshore.context import Context
from longshore.errors import InvalidPayload, LibraryError
from longshore.hooks import Hook, HookFunction
from store.queue.models import HANDLER_NAME
from store.queue.retry import RetryPolicy
from store.schedules.models import SCHEDULE_NAME

__all__ = ["Plugin", "Registry", "TypedHandler"]

P = TypeVar("P")
F = TypeVar("F", bound=HookFunction)


@dataclass(frozen=True, kw_only=True)
class TypedHandler(Generic[P]):
    """A registered handler: its task name, the function and how its payload is read.

    Calling it calls the function (handy in tests); pass it to
    :meth:`longshore.Client.enqueue` in place of its name.
    """

    name: str
    function: Callable[..., Any]
    payload_type: Any
    takes_context: bool
    is_async: bool
    _adapter: TypeAdapter[Any] | None = field(repr=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def parse(self, payload: dict[str, Any]) -> Any:
        """The payload as the function takes it; raises :class:`InvalidPayload`."""
        if self._adapter is None:
            return payload
        try:
            return self._adapter.validate_python(payload)
        except ValidationError as exc:
            type_name = getattr(self.payload_type, "__name__", str(self.payload_type))
            raise InvalidPayload(
                f"payload of {self.name!r} does not validate as {type_name}: {exc}"
            ) from None

    async def run(self, payload: dict[str, Any], context: Context) -> None:
        """Validate ``payload`` and call the function (in a thread if it is not async)."""
        args = (self.parse(payload), context) if self.takes_context else (self.parse(payload),)
        if self.is_async:
            await self.function(*args)
            return
        if self.takes_context:
            _ = context.cancelled  # made here, on the event loop, not in the handler's thread
        await asyncio.to_thread(self.function, *args)


@dataclass(frozen=True, kw_only=True)
class FactorySpec:
    """A handler a schedule may name (see :meth:`Registry.schedule_factory`)."""

    name: str
    handler: str
    queue: str
    priority: int
    retry: RetryPolicy


class Plugin(Protocol):
    """A bundle of hooks: :meth:`Registry.use` calls :meth:`register` with the registry."""

    def register(self, registry: Registry) -> None:
        """Register the plugin's hooks (and anything else it needs) on ``registry``."""
        ...


def _require_async(function: Callable[..., Any]) -> None:
    if not inspect.iscoroutinefunction(function):
        raise LibraryError(f"hook {function!r} must be an async function")


def _payload_adapter(payload_type: Any) -> TypeAdapter[Any] | None:
    if payload_type in (inspect.Parameter.empty, Any, dict, object):
        return None
    origin = getattr(payload_type, "__origin__", None)
    if origin is dict:
        return None
    return TypeAdapter(payload_type)


def _typed(name: str, function: Callable[..., Any]) -> TypedHandler[Any]:
    parameters = list(inspect.signature(function).parameters.values())
    if not 1 <= len(parameters) <= 2:
        raise LibraryError(f"handler {name!r} must take (payload) or (payload, context)")
    try:
        hints = get_type_hints(function)
    except (NameError, TypeError) as exc:
        raise LibraryError(f"handler {name!r}: cannot read its annotations: {exc}") from None
    payload_type = hints.get(parameters[0].name, inspect.Parameter.empty)
    return TypedHandler(
        name=name,
        function=function,
        payload_type=payload_type,
        takes_context=len(parameters) == 2,
        is_async=inspect.iscoroutinefunction(function),
        _adapter=_payload_adapter(payload_type),
    )


class Registry:
    """Your handlers, hooks and schedule factories; handed to :class:`longshore.Worker`
    (and to :func:`longshore.admin_app`, for the factories)."""

    def __init__(self) -> None:
        self._handlers: dict[str, TypedHandler[Any]] = {}
        self._hooks: dict[Hook, list[HookFunction]] = {}
        self._factories: dict[str, FactorySpec] = {}

    # --- handlers --------------------------------------------------------------------------

    def handler(
        self, name: str, *, schedulable: bool = False
    ) -> Callable[[Callable[..., Any]], TypedHandler[Any]]:
        """Register the decorated function as the handler of tasks named ``name``.

        With ``schedulable=True`` it is also a schedule factory of the same name (see
        :meth:`schedule_factory`).
        """

        def register(function: Callable[..., Any]) -> TypedHandler[Any]:
            if not isinstance(name, str) or not HANDLER_NAME.fullmatch(name):
                raise LibraryError(f"handler name {name!r} is invalid")
            if name in self._handlers:
                raise LibraryError(f"handler {name!r} is already registered")
            typed = _typed(name, function)
            self._handlers[name] = typed
            if schedulable:
                self.schedule_factory(name)
            return typed

        return register

    def get(self, name: str) -> TypedHandler[Any] | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __iter__(self) -> Iterator[TypedHandler[Any]]:
        return iter([self._handlers[name] for name in self.names()])

    # --- schedule factories ------------------------------------------------------------------

    def schedule_factory(
        self,
        handler: str,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        retry: str | RetryPolicy = "default",
    ) -> None:
        """Let schedules enqueue tasks for ``handler``: registers the factory ``name``
        (default: the handler's name) that ``longshore schedules create --factory`` and the
        admin API can name; each firing enqueues a task on ``queue`` with the schedule's
        payload. Schedules fire in a :class:`longshore.Worker` (its scheduler is on when
        the registry has factories) or in ``longshore serve``."""
        factory = name or handler
        if not SCHEDULE_NAME.fullmatch(factory):
            raise LibraryError(
                f"factory name {factory!r} is invalid (letters, digits, '.', '_', '-'): "
                "pass name=..."
            )
        policy = retry if isinstance(retry, RetryPolicy) else RetryPolicy.preset(retry)
        self._factories[factory] = FactorySpec(
            name=factory, handler=handler, queue=queue, priority=priority, retry=policy
        )

    @property
    def factories(self) -> list[FactorySpec]:
        return [self._factories[name] for name in sorted(self._factories)]

    # --- hooks and plugins -------------------------------------------------------------------

    def on(self, hook: Hook | str) -> Callable[[F], F]:
        """Register the decorated async function as a hook (see :mod:`longshore.hooks`)."""
        point = Hook(hook)

        def register(function: F) -> F:
            _require_async(function)
            self._hooks.setdefault(point, []).append(function)
            return function

        return register

    def add_hook(self, hook: Hook | str, function: HookFunction) -> None:
        """Register ``function`` as a hook (the non-decorator form of :meth:`on`)."""
        self.on(hook)(function)

    def use(self, plugin: Plugin) -> None:
        """Let a plugin register its hooks."""
        plugin.register(self)

    def hooks(self) -> dict[Hook, list[HookFunction]]:
        """The registered hooks by point (a copy)."""
        return {point: list(functions) for point, functions in self._hooks.items()}
