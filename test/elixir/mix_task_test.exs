defmodule Mix.Tasks.Hornbeam.RunTest do
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO
  alias Mix.Tasks.Hornbeam.Run

  @root Path.expand("../..", __DIR__)
  @example Path.join(@root, "examples/channels_chat")

  test "parses the CLI's options into hornbeam:start/2's map" do
    assert {:ok, "app:app", opts, node} =
             Run.parse(~w(app:app --bind 127.0.0.1:0 --workers 2 --worker-class wsgi
                          --channel-module a --channel-module b --pythonpath x --pythonpath y
                          --ws-path /socket --name n@127.0.0.1 --cookie-file /run/c --join m@127.0.0.1
                          --join o@127.0.0.1,p@127.0.0.1 --join-dns peers --log-level info))

    assert opts == %{
             bind: ~c"127.0.0.1:0",
             workers: 2,
             worker_class: :wsgi,
             channel_modules: [~c"a", ~c"b"],
             pythonpath: [~c"x", ~c"y"],
             ws_path: ~c"/socket",
             join: [~c"m@127.0.0.1", ~c"o@127.0.0.1", ~c"p@127.0.0.1"],
             join_dns: [~c"peers"]
           }

    assert node == %{name: ~c"n@127.0.0.1", cookie_file: ~c"/run/c", log_level: :info}

    assert {:ok, "chat:app", %{pythonpath: [~c"."], channel_modules: []}, %{}} =
             Run.parse(["chat:app"])

    assert {:error, "--cookie would show the cookie in `ps`" <> _} =
             Run.parse(~w(app:app --name n@127.0.0.1 --cookie secret))
  end

  test "--help prints the usage" do
    out = capture_io(fn -> assert Run.serve(["--help"]) == :help end)
    assert out =~ "usage: mix hornbeam.run MODULE:APP [options]"
    assert out =~ "--channel-module M"
    assert capture_io(fn -> Run.run(["app:app", "-h"]) end) =~ "--bind HOST:PORT"
  end

  test "usage errors are one-line Mix errors" do
    for {argv, message} <- [
          {[], "missing MODULE:APP"},
          {["not-an-app"], "malformed MODULE:APP 'not-an-app'"},
          {["app:app", "--workers", "zero"], "--workers needs a positive integer, got zero"},
          {["app:app", "--bogus", "1"], "unknown option: --bogus"},
          {["app:app", "--bind"], "option --bind needs a value"},
          {["app:app", "--ws-path", "ws"], "--ws-path must start with /"}
        ] do
      error = assert_raise Mix.Error, fn -> Run.run(argv) end
      assert error.message =~ "hornbeam.run: " <> message
      refute error.message =~ "\n"
    end
  end

  test "serves the chat example; a Python import error and a port in use are one line" do
    args = ~w(app:app --workers 1 --channel-module app --pythonpath #{@example})

    assert {:ok, "http://127.0.0.1:" <> port} =
             (
               capture_io(fn -> send(self(), Run.serve(args ++ ~w(--bind 127.0.0.1:0))) end)
               receive do: (result -> result)
             )

    port = String.to_integer(port)

    try do
      {:ok, c} = Hornbeam.Test.WsClient.connect(port)

      assert %{"status" => "ok"} =
               Hornbeam.Test.WsClient.join(c, "room:lobby", %{"username" => "ana"})

      Hornbeam.Test.WsClient.close(c)

      # Hornbeam is serving already: a second start on the same port fails.
      error = assert_raise Mix.Error, fn -> Run.serve(args ++ ~w(--bind 127.0.0.1:#{port})) end
      refute error.message =~ "\n"
    after
      Hornbeam.stop()
    end

    {:ok, listen} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, busy} = :inet.port(listen)

    error = assert_raise Mix.Error, fn -> Run.serve(args ++ ~w(--bind 127.0.0.1:#{busy})) end

    :gen_tcp.close(listen)

    assert error.message ==
             "hornbeam.run: 127.0.0.1:#{busy} is already in use (another server is listening there)"

    error =
      assert_raise Mix.Error, fn ->
        Run.serve(~w(no_such_mod_xyz:app --workers 1 --bind 127.0.0.1:0))
      end

    assert error.message =~
             ~r/^hornbeam.run: cannot import Python module no_such_mod_xyz: ModuleNotFoundError/

    # a module that is not there has no traceback worth showing
    refute error.message =~ "\n"
  end

  test "a module with channels and no app is served channels-only" do
    # (not @tag :tmp_dir: that writes under the checkout's tmp/)
    dir = Path.join(System.tmp_dir!(), "hornbeam_mix_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)

    File.write!(Path.join(dir, "docs_chat.py"), """
    from hornbeam_channels import channel

    room = channel("room:*")

    @room.on_join
    def join(topic, topic_params, params, socket):
        return ("ok", {"shape": "channels only"}, socket)
    """)

    args = ~w(docs_chat:app --workers 1 --pythonpath #{dir} --bind 127.0.0.1:0)

    assert {:ok, "http://127.0.0.1:" <> port} =
             (
               capture_io(fn -> send(self(), Run.serve(args)) end)
               receive do: (result -> result)
             )

    port = String.to_integer(port)

    try do
      {:ok, c} = Hornbeam.Test.WsClient.connect(port)

      assert %{"status" => "ok", "response" => %{"shape" => "channels only"}} =
               Hornbeam.Test.WsClient.join(c, "room:lobby", %{})

      Hornbeam.Test.WsClient.close(c)
      {:ok, s} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false])
      :ok = :gen_tcp.send(s, "GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
      assert {:ok, "HTTP/1.1 404" <> _} = :gen_tcp.recv(s, 0, 30_000)
      :gen_tcp.close(s)
    after
      Hornbeam.stop()
    end

    File.write!(Path.join(dir, "nothing_here.py"), "X = 1\n")

    error =
      assert_raise Mix.Error, fn ->
        Run.serve(~w(nothing_here:app --workers 1 --pythonpath #{dir} --bind 127.0.0.1:0))
      end

    assert error.message ==
             "hornbeam.run: cannot serve nothing_here:app: module 'nothing_here' has no " <>
               "attribute 'app' and no channels are registered: nothing to serve"
  end
end
