defmodule Hornbeam.MixProject do
  use Mix.Project

  # The OTP application is written in Erlang (src/); lib/ holds the Elixir
  # face. The Rust NIF and Python worker are built by scripts/build_native.sh
  # through the :hornbeam_native compiler below, so no hex package is needed.
  def project do
    [
      app: :hornbeam,
      version: "0.1.0",
      elixir: "~> 1.14",
      compilers: [:hornbeam_native] ++ Mix.compilers(),
      erlc_paths: ["src"],
      erlc_include_path: "include",
      erlc_options: [:debug_info],
      elixirc_paths: elixirc_paths(Mix.env()),
      test_paths: ["test/elixir"],
      deps: []
    ]
  end

  # test/elixir/support: the tests' WebSocket client and Elixir channel.
  defp elixirc_paths(:test), do: ["lib", "test/elixir/support"]
  defp elixirc_paths(_env), do: ["lib"]

  def application do
    [mod: {:hornbeam_app, []}, extra_applications: [:logger, :crypto]]
  end
end

defmodule Mix.Tasks.Compile.HornbeamNative do
  @moduledoc "Builds the Rust NIF and the Python worker port into priv/ (cargo)."
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    script = Path.join(__DIR__, "scripts/build_native.sh")

    case System.cmd("bash", [script], stderr_to_stdout: true) do
      {_, 0} ->
        {:ok, []}

      {output, status} ->
        Mix.shell().error(output)
        Mix.raise("scripts/build_native.sh failed with exit status #{status} (is cargo installed?)")
    end
  end
end
