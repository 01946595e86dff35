import ArgumentParser
import WharfDeploy

@main
struct Wharf: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wharf",
        abstract: "Wharf: machine-learning models from offline training to production.",
        subcommands: [PredictCommand.self, InspectCommand.self, BenchCommand.self, BenchRequestCommand.self, ServeCommand.self, RegistryCommand.self, ModelsCommand.self, ValidateCommand.self, GatewayCommand.self, DeployCommand.self, UpCommand.self, HubCommand.self, BenchBusCommand.self, DatasetCommand.self, ScoreCommand.self, TrainCommand.self, PipelineCommand.self, DemoFeedCommand.self]
    )

    static func main() async {
        Supervisor.stopWithSupervisor()
        await main(nil)
    }
}
