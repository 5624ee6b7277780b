defmodule Mix.Tasks.Hornbeam.Run do
  @shortdoc "Serves a Python ASGI/WSGI app and its channels (like bin/hornbeam run)"

  @moduledoc """
  Serves a Python ASGI/WSGI app and its channel modules over HTTP and
  WebSocket, from the current Mix project (its applications are started
  first, so Elixir code of the project is loaded and running).

      mix hornbeam.run MODULE:APP [options]
      mix hornbeam.run app:app --pythonpath examples/channels_chat --channel-module app

  The options are those of `bin/hornbeam run` (parsed by the same code,
  `:hornbeam_cli.parse/1`):

    * `--bind HOST:PORT` - address to serve (default `127.0.0.1:8000`; `[::]:8000` for IPv6)
    * `--workers N` - Python worker processes (default: number of schedulers)
    * `--threads N` - threads per worker running `def` handlers and WSGI apps (default 16)
    * `--max-queued-calls N` - calls a worker lets wait for a thread before answering
      `overloaded` (default 1024)
    * `--worker-class CLASS` - `asgi` or `wsgi` (default `asgi`)
    * `--channel-module M` - Python module with channel handlers (repeatable)
    * `--pythonpath DIR` - added to `sys.path` (repeatable; default the current directory)
    * `--python PATH` - interpreter or virtualenv to import from (default: the activated
      virtualenv); must be the Python version the worker was built for
    * `--ws-path PATH` - WebSocket endpoint (default `/ws`)
    * `--public-host HOST` - host browsers reach the server by, for the WebSocket
      Origin check (repeatable; default: the `--bind` host)
    * `--name NODE` - Erlang node name, e.g. `a@127.0.0.1` (enables clustering)
    * `--cookie-file PATH` - file holding the distribution cookie (mode 600); default:
      `$HORNBEAM_COOKIE`, else `~/.erlang.cookie`
    * `--dist-interface IP` - address distribution listens on (default: the `--name`
      host if it is an IP address, else loopback)
    * `--join NODE[,NODE]` - cluster with these nodes, reconnecting for ever (repeatable)
    * `--join-dns NAME` - cluster with `BASE@IP` for each address of DNS `NAME` (repeatable)
    * `--join-retry-interval MS` - reconnection period (default 2000)
    * `--log-level LEVEL` - `debug | info | notice | warning | error` (default `notice`)
    * `--metrics-bind HOST:PORT` - Prometheus `/metrics` and the dashboard there (default: off;
      never the `--bind` port)
    * `--log-format text|json` - the format of OTP's `default` log handler (Elixir's
      `Logger`, which replaces that handler under Mix, keeps its own format)

  The task serves until the VM stops (Ctrl-C). Under `iex -S mix hornbeam.run ...`
  it returns to the shell instead. Errors (a Python import error, a port in
  use, a malformed option) stop it with a one-line message.
  """

  use Mix.Task

  @impl Mix.Task
  def run(argv) do
    case serve(argv) do
      {:ok, _url} -> unless iex_running?(), do: Process.sleep(:infinity)
      :help -> :ok
    end
  end

  @doc """
  Everything `run/1` does except waiting: parses `argv`, starts the project's
  applications and serving. Returns `{:ok, url}` (`:help` after printing the
  usage); raises `Mix.Error` with a one-line message on any error.
  """
  @spec serve([String.t()]) :: {:ok, String.t()} | :help
  def serve(argv) do
    case parse(argv) do
      :help ->
        Mix.shell().info(usage())
        :help

      {:error, message} ->
        Mix.raise("hornbeam.run: #{message} (see `mix help hornbeam.run`)")

      {:ok, app_spec, opts, node} ->
        start(app_spec, opts, node)
    end
  end

  @doc """
  Parses the task's arguments into `{:ok, app_spec, opts, node_opts}` (`opts`
  being the map `:hornbeam.start/2` takes), `:help` or `{:error, message}`.
  """
  @spec parse([String.t()]) :: {:ok, String.t(), map(), map()} | :help | {:error, String.t()}
  def parse(argv) do
    case :hornbeam_cli.parse([~c"run" | Enum.map(argv, &String.to_charlist/1)]) do
      {:run, app_spec, opts, node} -> {:ok, List.to_string(app_spec), opts, node}
      {:error, message} -> {:error, List.to_string(message)}
      help when help in [:help, :run_help] -> :help
    end
  end

  defp usage do
    :hornbeam_cli.run_usage()
    |> List.to_string()
    |> String.replace("hornbeam run", "mix hornbeam.run")
  end

  defp start(app_spec, opts, node) do
    Mix.Task.run("app.start")
    # After app.start: starting :logger would reset the level.
    Logger.configure(level: Map.get(node, :log_level, :notice))
    distribution(node)
    bind = Map.get(opts, :bind, ~c"127.0.0.1:8000")

    # held-back logs: a failure is the one block of explain/2 (:hornbeam_startup)
    case :hornbeam_startup.start(String.to_charlist(app_spec), opts) do
      :ok ->
        url = url(bind)
        ws_path = Map.get(opts, :ws_path, ~c"/ws")

        Mix.shell().info(
          "hornbeam: serving #{app_spec} on #{url} (WebSocket at #{ws_path}); Ctrl-C to stop"
        )

        {:ok, url}

      {:error, reason} ->
        Mix.raise("hornbeam.run: " <> explain(reason, bind))
    end
  end

  # Cookie from --cookie-file or $HORNBEAM_COOKIE (never argv), loopback
  # unless told: :hornbeam_distribution. Joining is :hornbeam.start/2's
  # join options (:hornbeam_cluster).
  defp distribution(%{name: _} = node) do
    case :hornbeam_distribution.start(node) do
      :ok -> :ok
      {:error, message} -> Mix.raise("hornbeam.run: " <> IO.iodata_to_binary(message))
    end
  end

  defp distribution(node) do
    if Map.has_key?(node, :cookie_file) or Map.has_key?(node, :dist_interface),
      do: Mix.raise("hornbeam.run: --cookie-file and --dist-interface need --name")

    :ok
  end

  # The URL actually served (the port may have been 0).
  defp url(bind) do
    host =
      case :hornbeam_http_bind.parse(bind) do
        {:ok, {ip, _}} when tuple_size(ip) == 8 -> "[#{:inet.ntoa(ip)}]"
        {:ok, {ip, _}} -> to_string(:inet.ntoa(ip))
        _ -> "127.0.0.1"
      end

    "http://#{host}:#{:hornbeam.port()}"
  end

  @doc false
  @spec explain(term(), charlist() | String.t()) :: String.t()
  def explain(reason, bind), do: IO.iodata_to_binary(:hornbeam_cli.explain(reason, bind))

  defp iex_running? do
    Code.ensure_loaded?(IEx) and IEx.started?()
  end
end
