pub mod gateway;
pub mod mock_upstream;
