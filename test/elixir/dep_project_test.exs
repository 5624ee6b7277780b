defmodule Hornbeam.DepProjectTest do
  @moduledoc """
  Hornbeam as a path dependency of a fresh Mix project: it compiles (the
  Rust parts through the :hornbeam_native compiler step, no hex package),
  `mix hornbeam.run` is available there, and the project's own Elixir
  channel module is served.
  """
  use ExUnit.Case, async: false

  @moduletag :mix_project
  @moduletag timeout: 180_000

  @root Path.expand("../..", __DIR__)

  setup do
    dir = Path.join(System.tmp_dir!(), "hornbeam_dep_#{System.unique_integer([:positive])}")
    File.mkdir_p!(Path.join(dir, "lib"))
    on_exit(fn -> File.rm_rf!(dir) end)
    %{dir: dir}
  end

  test "a Mix project depending on hornbeam by path compiles and serves its Elixir channel",
       %{dir: dir} do
    File.write!(Path.join(dir, "mix.exs"), """
    defmodule Demo.MixProject do
      use Mix.Project

      def project do
        [app: :demo, version: "0.1.0", elixir: "~> 1.14",
         deps: [{:hornbeam, path: #{inspect(@root)}}]]
      end

      def application, do: [extra_applications: [:logger]]
    end
    """)

    File.write!(Path.join(dir, "lib/demo_channel.ex"), """
    defmodule Demo.Channel do
      @behaviour :hornbeam_channel

      @impl true
      def join("demo:" <> id, %{"user" => user}, socket),
        do: {:ok, %{"id" => id, "welcome" => user}, :hornbeam_channel.assign(socket, :user, user)}

      @impl true
      def handle_in("echo", payload, socket),
        do: {:reply, {:ok, %{"echo" => payload, "user" => socket.assigns.user}}, socket}
    end
    """)

    File.write!(Path.join(dir, "serve.exs"), """
    :ok = Hornbeam.start(:none, %{bind: "127.0.0.1:0", channels: [{"demo:*", Demo.Channel}]})
    IO.puts("HORNBEAM_PORT=\#{Hornbeam.port()}")
    # Serve until the test closes our stdin.
    IO.read(:stdio, :line)
    """)

    assert {out, 0} = mix(dir, ["compile"])
    assert out =~ "Generated demo app"
    assert File.exists?(Path.join(dir, "_build/dev/lib/hornbeam/priv/hornbeam_nif.so"))

    assert {help, 0} = mix(dir, ["hornbeam.run", "--help"])
    assert help =~ "usage: mix hornbeam.run MODULE:APP [options]"

    port =
      Port.open({:spawn_executable, System.find_executable("mix")}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 4096},
        cd: dir,
        env: env(),
        args: ["run", "serve.exs"]
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    try do
      http_port = wait_for_port(port, "")
      {:ok, c} = Hornbeam.Test.WsClient.connect(http_port)

      assert %{"status" => "ok", "response" => %{"id" => "1", "welcome" => "ana"}} =
               Hornbeam.Test.WsClient.join(c, "demo:1", %{"user" => "ana"})

      :ok = Hornbeam.Test.WsClient.push(c, "1", "2", "demo:1", "echo", %{"x" => 1})

      assert [
               "1",
               "2",
               "demo:1",
               "phx_reply",
               %{"status" => "ok", "response" => %{"echo" => %{"x" => 1}, "user" => "ana"}}
             ] = Hornbeam.Test.WsClient.recv_json(c)

      Hornbeam.Test.WsClient.close(c)
    after
      # Closing stdin ends serve.exs; the kill is for a script that hangs.
      Port.close(port)
      Process.sleep(200)
      System.cmd("kill", ["#{os_pid}"], stderr_to_stdout: true)
    end
  end

  defp env do
    rebar3 = System.get_env("MIX_REBAR3") || System.find_executable("rebar3") || "rebar3"

    [
      {~c"MIX_ENV", ~c"dev"},
      {~c"MIX_REBAR3", String.to_charlist(rebar3)},
      {~c"HEX_OFFLINE", ~c"1"},
      {~c"MIX_BUILD_PATH", false},
      {~c"MIX_DEPS_PATH", false},
      {~c"MIX_EXS", false}
    ]
  end

  defp mix(dir, args) do
    env = for {k, v} <- env(), do: {List.to_string(k), if(v, do: List.to_string(v))}
    System.cmd("mix", args, cd: dir, env: env, stderr_to_stdout: true)
  end

  defp wait_for_port(port, log) do
    receive do
      {^port, {:data, {_, "HORNBEAM_PORT=" <> n}}} ->
        String.to_integer(n)

      {^port, {:data, {_, line}}} ->
        wait_for_port(port, log <> line <> "\n")

      {^port, {:exit_status, status}} ->
        flunk("serve.exs exited with #{status}:\n#{log}")
    after
      60_000 -> flunk("serve.exs printed no port:\n#{log}")
    end
  end
end
